-- conf: loading and checking conf/bt2cd.lua (src/conf.c, lua/conf.lua).
-- Config files are written line by line into a fresh temp dir, so every
-- expected "file:line: message" names a known line.
local bt2c = require("bt2c")

local SOURCE = os.getenv("BT2C_SOURCE") or "."

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The symlink-free absolute path of an existing directory.
local function realdir(p)
  local h = assert(io.popen("cd " .. sh_quote(p) .. " && pwd -P"))
  local r = h:read("l")
  h:close()
  return r
end

-- The configuration as the seed names it, with every default.
local function seed_defaults(base)
  return {
    port = 8765,
    host = "0.0.0.0",
    maxPeers = 50,
    maxInbound = 25,
    maxOutbound = 25,
    connectionTimeout = 10000,
    handshakeTimeout = 5000,
    pingInterval = 30000,
    bootstrapPeers = {},
    persistentPeers = {},
    peerDiscoveryInterval = 300000,
    validators = {}, -- ours, not the seed's
    nodeMetadata = { version = "1.0.0", isValidator = false },
    peerScoring = {
      decayPeriod = 3600000,
      decayFactor = 0.95,
      historyLimit = 100,
      weights = { latency = 0.2, uptime = 0.2, blockPropagation = 0.25, transactionRelay = 0.15,
                  validatorStatus = 0.1, behavior = 0.1 },
      thresholds = { trusted = 75, neutral = 0, banned = -50 },
    },
    natTraversal = {
      stunServers = { "stun:stun.bt2c.network:3478", "stun:stun.l.google.com:19302" },
      turnServers = { { urls = "turn:turn.bt2c.network:3478", username = "bt2c",
                        credential = "bt2c-turn-credential" } },
      preferredMethod = "stun",
      candidatePreference = "srflx",
      stunRto = 500, -- ours, not the seed's (RFC 8489 timing)
      stunRetransmissions = 7,
      stunRefreshInterval = 300000,
    },
    messageRelay = {
      maxRelayHops = 3,
      relayMode = "selective",
      relayThreshold = 50,
      messageExpiration = 3600000,
      cleanupInterval = 300000,
      seenCacheSize = 524288, -- ours, not the seed's
    },
    dataDir = base .. "/data",
    policyDir = base .. "/policies",
    consoleSocket = base .. "/data/console.sock",
    networkId = "bt2c-mainnet",
    metrics = { host = "127.0.0.1", port = 0 },
    tls = {},
    logLevel = "info",
    maxMessageSize = 1048576,
    consoleTimeout = 5000,
    policyLimits = { instructions = 1000000, time = 50, memory = 16777216, failures = 5 },
  }
end

-- What bt2c.conf_load returns (struct conf's fields) for a seed-shaped config.
local function struct_view(cfg, path, dir)
  local ps = cfg.peerScoring
  return {
    path = path,
    dir = dir,
    port = cfg.port,
    host = cfg.host,
    maxPeers = cfg.maxPeers,
    maxInbound = cfg.maxInbound,
    maxOutbound = cfg.maxOutbound,
    connectionTimeout = cfg.connectionTimeout,
    handshakeTimeout = cfg.handshakeTimeout,
    pingInterval = cfg.pingInterval,
    peerDiscoveryInterval = cfg.peerDiscoveryInterval,
    bootstrapPeers = cfg.bootstrapPeers,
    persistentPeers = cfg.persistentPeers,
    validators = cfg.validators,
    nodeId = cfg.nodeId,
    metaVersion = cfg.nodeMetadata.version,
    isValidator = cfg.nodeMetadata.isValidator,
    peerScoring = {
      decayPeriod = ps.decayPeriod,
      decayFactor = ps.decayFactor,
      historyLimit = ps.historyLimit,
      weights = ps.weights,
      trusted = ps.thresholds.trusted,
      neutral = ps.thresholds.neutral,
      banned = ps.thresholds.banned,
    },
    natTraversal = cfg.natTraversal,
    messageRelay = cfg.messageRelay,
    dataDir = cfg.dataDir,
    policyDir = cfg.policyDir,
    consoleSocket = cfg.consoleSocket,
    networkId = cfg.networkId,
    metrics = cfg.metrics,
    tls = cfg.tls,
    logLevel = cfg.logLevel,
    maxMessageSize = cfg.maxMessageSize,
    consoleTimeout = cfg.consoleTimeout,
    policyLimits = cfg.policyLimits,
  }
end

local function without(t, ...)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  for _, k in ipairs({ ... }) do c[k] = nil end
  return c
end

-- Checks a successful load against the seed-shaped expectation, both the
-- struct fields and the normalized table.
local function assert_config(t, expected, path, dir)
  assert.same(struct_view(expected, path, dir), without(t, "normalized", "pushed"))
  assert.same(expected, t.pushed)
  assert.same(expected, load("return " .. t.normalized, "=config", "t", {})())
end

describe("conf", function()
  local dir

  before_each(function()
    local name = os.tmpname()
    os.remove(name)
    assert(os.execute("mkdir -m 700 " .. sh_quote(name)))
    dir = realdir(name)
  end)

  after_each(function()
    os.execute("rm -rf " .. sh_quote(dir))
  end)

  local function write(name, lines)
    local p = dir .. "/" .. name
    local f = assert(io.open(p, "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    return p
  end

  -- Writes lines as c.lua; returns its path and what conf_load returned.
  local function load_lines(lines)
    local p = write("c.lua", lines)
    return p, bt2c.conf_load(p)
  end

  -- Asserts that lines fail to load with exactly the given messages, each
  -- {line, message} (or a whole string for messages without a line).
  local function assert_errors(lines, expected)
    local p, t, errs = load_lines(lines)
    assert.is_nil(t)
    local want = {}
    for i, e in ipairs(expected) do
      want[i] = type(e) == "string" and e:gsub("^PATH", p) or ("%s:%d: %s"):format(p, e[1], e[2])
    end
    assert.same(want, errs)
  end

  describe("defaults", function()
    it("are the seed's when there is no file", function()
      local cwd = realdir(".")
      local t = assert(bt2c.conf_load(nil))
      assert_config(t, seed_defaults(cwd), nil, cwd)
    end)

    it("are the seed's for an empty table", function()
      local p, t, errs = load_lines({ "return {}" })
      assert.is_nil(errs)
      assert_config(t, seed_defaults(dir), p, dir)
    end)

    it("are used for an optional file that does not exist", function()
      local cwd = realdir(".")
      local t = assert(bt2c.conf_load(dir .. "/missing.lua", true))
      assert.is_nil(t.path)
      assert_config(t, seed_defaults(cwd), nil, cwd)
    end)

    it("keep their number subtypes in the normalized table", function()
      local t = assert(bt2c.conf_load(nil))
      assert.equal("float", math.type(t.pushed.peerScoring.decayFactor))
      assert.equal("float", math.type(t.pushed.peerScoring.weights.latency))
      assert.equal("integer", math.type(t.pushed.peerScoring.thresholds.trusted))
      assert.equal("integer", math.type(t.pushed.port))
    end)

    it("name enums and categories as the seed does", function()
      assert.same({ relayModes = { "flood", "selective", "validator_only" },
                    categories = { "latency", "uptime", "blockPropagation", "transactionRelay",
                                   "validatorStatus", "behavior" } }, bt2c.conf_names())
    end)
  end)

  describe("the shipped conf/bt2cd.lua", function()
    it("loads and resolves its paths against conf/", function()
      local src = realdir(SOURCE)
      local t, errs = bt2c.conf_load(SOURCE .. "/conf/bt2cd.lua")
      assert.is_nil(errs)
      assert.equal(src .. "/conf", t.dir)
      assert.equal(src .. "/data", t.dataDir)
      assert.equal(src .. "/policies", t.policyDir)
      assert.equal(src .. "/data/console.sock", t.consoleSocket)
      assert.same({}, t.bootstrapPeers)
      assert.same({}, t.persistentPeers)
      assert.same({}, t.natTraversal.stunServers)
      assert.same({}, t.natTraversal.turnServers)
      assert.equal(0, t.metrics.port)
    end)

    it("shows every other default", function()
      local src = realdir(SOURCE)
      local t = assert(bt2c.conf_load(SOURCE .. "/conf/bt2cd.lua"))
      local expected = seed_defaults(src)
      expected.natTraversal.stunServers = {}
      expected.natTraversal.turnServers = {}
      assert.same(expected, t.pushed)
    end)
  end)

  describe("values", function()
    it("are taken from the file, partial sections keeping other defaults", function()
      local p, t, errs = load_lines({
        "return {",
        "  port = 9000,",
        "  host = '::',",
        "  bootstrapPeers = { 'ws://seed.example.org:8765', 'wss://[2001:db8::1]:443' },",
        "  persistentPeers = { 'ws://10.0.0.1:1' },",
        "  nodeId = 'abc123',",
        "  nodeMetadata = { isValidator = true, region = 'eu', ['odd key'] = 1.5, ['end'] = 3 },",
        "  peerScoring = { decayFactor = 0.5, thresholds = { banned = -60 } },",
        "  natTraversal = { turnServers = { { urls = 'turns:t.example:5349?transport=tcp',",
        "                                    username = 'u', credential = 'c' } } },",
        "  messageRelay = { relayMode = 'validator_only' },",
        "  metrics = { port = 9100 },",
        "  logLevel = 'debug',",
        "  policyLimits = { time = 20 },",
        "}",
      })
      assert.is_nil(errs)
      local expected = seed_defaults(dir)
      expected.port = 9000
      expected.host = "::"
      expected.bootstrapPeers = { "ws://seed.example.org:8765", "wss://[2001:db8::1]:443" }
      expected.persistentPeers = { "ws://10.0.0.1:1" }
      expected.nodeId = "abc123"
      expected.nodeMetadata = { version = "1.0.0", isValidator = true, region = "eu",
                                ["odd key"] = 1.5, ["end"] = 3 }
      expected.peerScoring.decayFactor = 0.5
      expected.peerScoring.thresholds.banned = -60
      expected.natTraversal.turnServers = { { urls = "turns:t.example:5349?transport=tcp",
                                              username = "u", credential = "c" } }
      expected.messageRelay.relayMode = "validator_only"
      expected.metrics.port = 9100
      expected.logLevel = "debug"
      expected.policyLimits.time = 20
      assert_config(t, expected, p, dir)
    end)

    it("resolve relative paths against the file's directory", function()
      assert(os.execute("mkdir " .. sh_quote(dir .. "/etc")))
      write("cert.pem", { "CERT" })
      write("key.pem", { "KEY" })
      local p = write("etc/c.lua", {
        "return {",
        "  dataDir = 'state/./node/',",
        "  policyDir = '../pol',",
        "  consoleSocket = '/run//bt2c/../bt2c.sock',",
        "  tls = { cert = '../cert.pem', key = './sub/../../key.pem' },",
        "}",
      })
      local t, errs = bt2c.conf_load(p)
      assert.is_nil(errs)
      assert.equal(dir .. "/etc", t.dir)
      assert.equal(dir .. "/etc/state/node", t.dataDir)
      assert.equal(dir .. "/pol", t.policyDir)
      assert.equal("/run/bt2c.sock", t.consoleSocket)
      assert.same({ cert = dir .. "/cert.pem", key = dir .. "/key.pem" }, t.tls)
    end)

    it("put the console socket in the data directory by default", function()
      local _, t = load_lines({ "return { dataDir = '/var/lib/bt2c' }" })
      assert.equal("/var/lib/bt2c/console.sock", t.consoleSocket)
    end)

    it("are normalized deterministically and round-trip", function()
      local lines = {
        "return {",
        "  nodeMetadata = { zz = 'last', aa = 'first', ['with space'] = true, n = -7,",
        "                   quoted = 'say \"hi\"\\n' },",
        "  peerScoring = { weights = { latency = 0.3, uptime = 0.1 } },",
        "  messageRelay = { relayThreshold = 12.25 },",
        "}",
      }
      local _, t1 = load_lines(lines)
      local _, t2 = load_lines(lines)
      assert.equal(t1.normalized, t2.normalized)
      local back = load("return " .. t1.normalized, "=config", "t", {})()
      assert.same(t1.pushed, back)
      assert.equal(0.3, back.peerScoring.weights.latency)
      assert.equal(12.25, back.messageRelay.relayThreshold)
      assert.equal('say "hi"\n', back.nodeMetadata.quoted)
      assert.equal(-7, back.nodeMetadata.n)
      assert.equal("integer", math.type(back.nodeMetadata.n))
      assert.truthy(t1.normalized:find('nodeMetadata={aa="first",isValidator=false,n=-7,quoted=', 1, true))
      assert.truthy(t1.normalized:find(',version="1.0.0",["with space"]=true,zz="last"}', 1, true))
      assert.equal("{bootstrapPeers={},", t1.normalized:sub(1, 19))
    end)

    it("may be built in a local table and returned by name", function()
      local p, t, errs = load_lines({
        "local c = { port = 1 }",
        "c.maxPeers = 60",
        "c.messageRelay = { maxRelayHops = 5 }",
        "return c",
      })
      assert.is_nil(errs)
      assert.equal(p, t.path)
      assert.equal(1, t.port)
      assert.equal(60, t.maxPeers)
      assert.equal(5, t.messageRelay.maxRelayHops)
    end)
  end)

  describe("errors", function()
    it("name an unknown key, with a suggestion", function()
      assert_errors({
        "return {",
        "  port = 1,",
        "  maxPeer = 10,",
        "  peerScoring = {",
        "    wieghts = {},",
        "    thresholds = { Trusted = 80 },",
        "  },",
        "  relayMode = 'flood',",
        "  zzzzz = 1,",
        "}",
      }, {
        { 3, "unknown key 'maxPeer' (did you mean 'maxPeers'?)" },
        { 5, "unknown key 'peerScoring.wieghts' (did you mean 'peerScoring.weights'?)" },
        { 6, "unknown key 'peerScoring.thresholds.Trusted' (did you mean "
               .. "'peerScoring.thresholds.trusted'?)" },
        { 8, "unknown key 'relayMode' (did you mean 'messageRelay.relayMode'?)" },
        { 9, "unknown key 'zzzzz'" },
      })
    end)

    it("name a wrong type", function()
      assert_errors({
        "return {",
        "  host = 80,",
        "  bootstrapPeers = 'ws://a:1',",
        "  peerScoring = 5,",
        "  nodeMetadata = { isValidator = 'yes' },",
        "  metrics = { port = '9100' },",
        "  dataDir = false,",
        "}",
      }, {
        { 2, "host must be a host name or an IP address (got 80)" },
        { 3, 'bootstrapPeers must be a list of ws:// or wss:// peer URLs (got "ws://a:1")' },
        { 4, "peerScoring must be a table (got 5)" },
        { 5, 'nodeMetadata.isValidator must be true or false (got "yes")' },
        { 6, 'metrics.port must be an integer in 0..65535 (got "9100")' },
        { 7, "dataDir must be a path (a non-empty string) (got false)" },
      })
    end)

    it("name a value out of range", function()
      assert_errors({
        "return {",
        "  maxInbound = -1,",
        "  port = 70000,",
        "  connectionTimeout = 0,",
        "  peerScoring = { decayFactor = 0, weights = { latency = 1.5 } },",
        "  messageRelay = {",
        "    maxRelayHops = 33,",
        "    relayThreshold = -101,",
        "  },",
        "  maxMessageSize = 100,",
        "  maxPeers = 3000000000,",
        "}",
      }, {
        { 2, "maxInbound must be an integer >= 0 (got -1)" },
        { 3, "port must be an integer in 0..65535 (got 70000)" },
        { 4, "connectionTimeout must be an integer > 0 (got 0)" },
        { 5, "peerScoring.decayFactor must be a number in (0, 1] (got 0)" },
        { 5, "peerScoring.weights.latency must be a number in [0, 1] (got 1.5)" },
        { 7, "messageRelay.maxRelayHops must be an integer in 1..32 (got 33)" },
        { 8, "messageRelay.relayThreshold must be a number in [-100, 100] (got -101)" },
        { 10, "maxMessageSize must be an integer in 1024..67108864 (got 100)" },
        { 11, "maxPeers must be an integer >= 0 and at most 2147483647 (got 3000000000)" },
      })
    end)

    it("name a float where an integer is needed", function()
      assert_errors({
        "return {",
        "  policyLimits = {",
        "    instructions = 1e6,",
        "    time = 2.5,",
        "  },",
        "}",
      }, {
        { 3, "policyLimits.instructions must be an integer in 1..1000000000 (got 1000000.0, "
               .. "a float: write 1000000)" },
        { 4, "policyLimits.time must be an integer in 1..60000 (got 2.5)" },
      })
    end)

    it("name a bad enum value, with a suggestion", function()
      assert_errors({
        "return {",
        "  messageRelay = { relayMode = 'selectiv' },",
        "  natTraversal = { preferredMethod = 'upnp' },",
        "  logLevel = 'verbose',",
        "}",
      }, {
        { 2, 'messageRelay.relayMode must be "flood", "selective" or "validator_only" (got '
               .. '"selectiv"; did you mean "selective"?)' },
        { 3, 'natTraversal.preferredMethod must be "stun", "turn" or "host" (got "upnp")' },
        { 4, 'logLevel must be "debug", "info", "warn" or "error" (got "verbose")' },
      })
    end)

    it("give the line of a bad element in a list", function()
      assert_errors({
        "return {",
        "  bootstrapPeers = {",
        "    'ws://good.example:1',",
        "    'http://bad.example:1',",
        "    'ws://[::1]:8765',",
        "    'ws://10.0.0.300:1',",
        "  },",
        "  persistentPeers = { 'ws://nohost.example' },",
        "  natTraversal = {",
        "    stunServers = { 'stun:ok.example', 'stun:ok.example:99999' },",
        "    turnServers = {",
        "      { urls = 'turn:t.example?transport=sctp', username = 'u', credential = 'c' },",
        "      { urls = 'turn:t.example' },",
        "    },",
        "  },",
        "}",
      }, {
        { 4, 'bootstrapPeers[2] must be a ws://host:port or wss://host:port URL (got '
               .. '"http://bad.example:1": the scheme is http, not ws or wss)' },
        { 6, 'bootstrapPeers[4] must be a ws://host:port or wss://host:port URL (got '
               .. '"ws://10.0.0.300:1": 10.0.0.300 is not a valid IPv4 address)' },
        { 8, 'persistentPeers[1] must be a ws://host:port or wss://host:port URL (got '
               .. '"ws://nohost.example": the port is missing)' },
        { 10, 'natTraversal.stunServers[2] must be a STUN URL "stun:host[:port]" (got '
               .. '"stun:ok.example:99999": port 99999 is not in 1..65535)' },
        { 12, 'natTraversal.turnServers[1].urls must be a TURN URL "turn:host[:port]" or '
               .. '"turns:host[:port]" (got "turn:t.example?transport=sctp": the only query '
               .. 'allowed is ?transport=udp or ?transport=tcp)' },
        { 13, "natTraversal.turnServers[2].credential is required (a string of at most 256 bytes)" },
        { 13, "natTraversal.turnServers[2].username is required (a string of at most 256 bytes)" },
      })
    end)

    it("say what the weights sum to", function()
      assert_errors({
        "return {",
        "  peerScoring = {",
        "    weights = {",
        "      latency = 0.2, uptime = 0.2, blockPropagation = 0.25,",
        "      transactionRelay = 0.15, validatorStatus = 0.1, behavior = 0.3,",
        "    },",
        "  },",
        "}",
      }, { { 3, "peerScoring.weights must sum to 1 (they sum to 1.2)" } })
      assert_errors({
        "return {",
        "  peerScoring = { weights = { latency = 0.3 } },",
        "}",
      }, { { 2, "peerScoring.weights must sum to 1 (they sum to 1.1, counting the defaults of uptime, "
                .. "blockPropagation, transactionRelay, validatorStatus, behavior)" } })
    end)

    it("accept weights that sum to 1 within 0.001", function()
      local _, t = load_lines({
        "return { peerScoring = { weights = { latency = 0.2005, uptime = 0.2, blockPropagation = 0.25,",
        "  transactionRelay = 0.15, validatorStatus = 0.1, behavior = 0.1 } } }",
      })
      assert.equal(0.2005, t.peerScoring.weights.latency)
    end)

    it("check the order of the thresholds", function()
      assert_errors({
        "return {",
        "  peerScoring = {",
        "    thresholds = { neutral = 80 },",
        "  },",
        "}",
      }, { { 3, "peerScoring.thresholds must be ordered banned < neutral < trusted "
                .. "(got banned -50, neutral 80, trusted 75)" } })
    end)

    it("check maxInbound and maxOutbound against maxPeers", function()
      assert_errors({
        "return {",
        "  maxPeers = 20,",
        "  maxInbound = 30,",
        "}",
      }, {
        { 2, "maxOutbound (25) must not exceed maxPeers (20)" },
        { 3, "maxInbound (30) must not exceed maxPeers (20)" },
      })
    end)

    it("need both TLS files, and readable ones", function()
      write("cert.pem", { "CERT" })
      assert_errors({
        "return {",
        "  tls = {",
        "    cert = 'cert.pem',",
        "  },",
        "}",
      }, { { 3, "tls.key must be set too: TLS needs both cert and key, or neither" } })
      assert_errors({
        "return {",
        "  tls = {",
        "    cert = 'cert.pem',",
        "    key = 'missing.pem',",
        "  },",
        "}",
      }, { { 4, ("tls.key: cannot read %s/missing.pem: No such file or directory"):format(dir) } })
    end)

    it("refuse a console socket path that does not fit in sun_path", function()
      local long = "/" .. ("x"):rep(100)
      assert_errors({
        "return {",
        "  dataDir = '" .. long .. "',",
        "}",
      }, { { 2, ("consoleSocket (by default dataDir/console.sock) is 114 bytes long, more than a Unix "
                 .. "socket path can hold (107): %s/console.sock; set consoleSocket to a shorter path")
                 :format(long) } })
      local _, t = load_lines({ "return { dataDir = '" .. long .. "', consoleSocket = '/run/s' }" })
      assert.equal("/run/s", t.consoleSocket)
    end)

    it("report a duplicate key", function()
      assert_errors({
        "return {",
        "  port = 1,",
        "  metrics = { port = 1, port = 2 },",
        "  port = 2,",
        "}",
      }, {
        { 3, "duplicate key 'metrics.port' (also set at line 3)" },
        { 4, "duplicate key 'port' (also set at line 2)" },
      })
    end)

    it("report every problem, in file order", function()
      assert_errors({
        "return {",
        "  maxPeer = 10,",
        "  port = 'x',",
        "  messageRelay = { relayMode = 'all', maxRelayHops = 0 },",
        "  logLevel = 'info',",
        "  natTraversal = { stunServers = { 'stun:' } },",
        "}",
      }, {
        { 2, "unknown key 'maxPeer' (did you mean 'maxPeers'?)" },
        { 3, 'port must be an integer in 0..65535 (got "x")' },
        { 4, "messageRelay.maxRelayHops must be an integer in 1..32 (got 0)" },
        { 4, 'messageRelay.relayMode must be "flood", "selective" or "validator_only" (got "all")' },
        { 6, 'natTraversal.stunServers[1] must be a STUN URL "stun:host[:port]" (got '
               .. '"stun:": the host is empty)' },
      })
    end)

    it("stop listing after 100 problems", function()
      local lines = { "return {" }
      for i = 1, 150 do lines[#lines + 1] = ("  unknown%d = 1,"):format(i) end
      lines[#lines + 1] = "}"
      local p, t, errs = load_lines(lines)
      assert.is_nil(t)
      assert.equal(101, #errs)
      assert.equal(p .. ":2: unknown key 'unknown1'", errs[1])
      assert.equal(p .. ": 50 more problems not shown", errs[101])
    end)

    it("check list shapes and metadata values", function()
      assert_errors({
        "return {",
        "  bootstrapPeers = { 'ws://a:1', x = 'ws://b:2' },",
        "  persistentPeers = { 'ws://a:1', nil, 'ws://c:3' },",
        "  nodeMetadata = { tags = { 'a' }, version = '' },",
        "}",
      }, {
        { 2, "unknown key 'bootstrapPeers.x' (bootstrapPeers is a list)" },
        { 3, "persistentPeers must be a list without holes (persistentPeers[2] is nil)" },
        { 4, "nodeMetadata.tags must be a string of at most 256 bytes, a finite number or a "
               .. "boolean (got a table)" },
        { 4, 'nodeMetadata.version must be a non-empty string of at most 64 bytes (got "": it is empty)' },
      })
    end)

    it("find lines past comments, long strings and escapes", function()
      assert_errors({
        "-- a comment with { port = 1 }",
        "--[[ a long comment {",
        "     port = 2 ]]",
        "--[==[ ]] still comment",
        "]==]",
        "local unused = 1 == 1",
        "return {",
        "  networkId = 'a\\",
        "b',",
        "  nodeMetadata = { note = [[",
        "} = , ]], other = \"}\\\"\", ['quoted key'] = '\\z",
        "      x' };",
        "  [\"maxPeers\"] = -2;",
        "  pingInterval = (function() local a, b = 1, 2; if a then return b end end)(),",
        "  bootstrapPeers = { 'ws://a:1'; [[ws://b:2]],",
        "    'ws://c' },",
        "}",
      }, {
        { 8, 'networkId must be 1..64 letters, digits, \'.\', \'_\', \':\' or \'-\' (got '
               .. '"a\\nb": not a network id)' },
        { 13, "maxPeers must be an integer >= 0 (got -2)" },
        { 16, 'bootstrapPeers[3] must be a ws://host:port or wss://host:port URL (got '
               .. '"ws://c": the port is missing)' },
      })
    end)

    it("fall back to the line of the return", function()
      assert_errors({
        "local c = {}",
        "local k = 'port'",
        "c[k] = 'x'",
        "return",
        "  c",
      }, { { 4, 'port must be an integer in 0..65535 (got "x")' } })
    end)
  end)

  describe("evaluation", function()
    it("keeps Lua's message for a syntax error", function()
      assert_errors({
        "return {",
        "  port = ,",
        "}",
      }, { { 2, "unexpected symbol near ','" } })
    end)

    it("keeps Lua's message for a runtime error", function()
      assert_errors({
        "return {",
        "  port = tonumber('1'),",
        "}",
      }, { { 2, "attempt to call a nil value (global 'tonumber')" } })
    end)

    it("gives no string methods", function()
      assert_errors({
        "return {",
        "  networkId = ('x'):rep(3),",
        "}",
      }, { { 2, "attempt to index a string value (constant 'x')" } })
    end)

    it("names the full path even when Lua would abbreviate it", function()
      local sub = dir .. "/" .. ("d"):rep(80)
      assert(os.execute("mkdir " .. sh_quote(sub)))
      local p = sub .. "/c.lua"
      local f = assert(io.open(p, "w"))
      f:write("return {\n  port = nil + 1,\n}\n")
      f:close()
      local t, errs = bt2c.conf_load(p)
      assert.is_nil(t)
      assert.same({ p .. ":2: attempt to perform arithmetic on a nil value" }, errs)
    end)

    it("needs a table", function()
      assert_errors({ "local x = 1", "return 'config'" },
        { { 2, 'the configuration must return a table (got "config")' } })
      assert_errors({ "local x = 1", "", "x = 2" },
        { { 3, "the configuration must return a table (got nothing)" } })
    end)

    it("stops an endless loop", function()
      assert_errors({ "while true do end" },
        { "PATH: configuration did not finish within its instruction budget" })
    end)

    it("stops a memory bomb", function()
      assert_errors({
        "local s = 'x'",
        "while true do s = s .. s end",
      }, { "PATH: configuration did not finish within its memory limit (32 MiB)" })
      local p, t, errs = load_lines({
        "local t = {}",
        "for i = 1, 1e9 do t[i] = { i, i, i } end",
        "return t",
      })
      assert.is_nil(t)
      assert.equal(1, #errs)
      assert.truthy(errs[1] == p .. ": configuration did not finish within its instruction budget"
                    or errs[1] == p .. ": configuration did not finish within its memory limit (32 MiB)")
    end)

    it("reports a missing file", function()
      local p = dir .. "/missing.lua"
      local t, errs = bt2c.conf_load(p)
      assert.is_nil(t)
      assert.same({ p .. ": cannot open: No such file or directory" }, errs)
      t, errs = bt2c.conf_load(dir, true)
      assert.is_nil(t)
      assert.same({ dir .. ": cannot open: Is a directory" }, errs)
    end)
  end)
end)
