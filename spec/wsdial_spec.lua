-- Functional: bt2cd's own WebSocket client (src/wsdial.c, src/wsclient.c),
-- used for ws:// dials, against an independent server that varies or breaks
-- the protocol on purpose (tools/pyclient/listener.py and its options). The
-- node dials the listener; the listener prints one JSON line per event.
local H = require "helpers.node"
local sys = H.sys
local cjson = require "cjson"

local PYTHON = "/usr/bin/python3" -- Debian's, with python3-websockets and python3-cryptography
local LISTENER = H.SOURCE .. "/tools/pyclient/listener.py"

local function json_lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  return out
end

local listeners = {}

-- Starts listener.py with extra arguments; waits for its port.
local function spawn_listener(args)
  local dir = H.tmpdir()
  local l = { dir = dir, out = dir .. "/out", err = dir .. "/err" }
  local argv = { PYTHON, LISTENER, "--seconds", "30" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  l.pid = sys.spawn({ argv = argv, stdout = l.out, stderr = l.err })
  listeners[#listeners + 1] = l
  function l.lines() return json_lines(H.read_file(l.out)) end
  -- The first line with field `key`, waiting up to `timeout` seconds for it.
  function l.wait(key, timeout)
    return H.wait_for(function()
      for _, line in ipairs(l.lines()) do
        if line[key] ~= nil then return line end
      end
    end, timeout or 10)
  end
  function l.stop()
    if l.stopped then return end
    l.stopped = true
    sys.kill(l.pid, "TERM")
    if not sys.wait(l.pid, 5) then sys.kill(l.pid, "KILL") sys.wait(l.pid, 5) end
    H.rmtree(dir)
  end
  function l.describe() -- for failure messages
    return (H.read_file(l.out) or "") .. (H.read_file(l.err) or "")
  end
  l.port = math.tointeger((l.wait("listening") or {}).listening)
  assert.truthy(l.port, "listener did not start: " .. l.describe())
  local tls = false
  for _, a in ipairs(args or {}) do tls = tls or a == "--tls" end
  l.url = string.format("%s://127.0.0.1:%d", tls and "wss" or "ws", l.port)
  return l
end

-- The node dials the listener.
local function dial(node, l)
  assert.is_true(node:eval(string.format("return network.connect(%q)", l.url)))
end

-- Dials and waits for the listener's end of the handshake; returns its id.
local function handshake(node, l)
  dial(node, l)
  local line = l.wait("established")
  assert.truthy(line, "no handshake: " .. l.describe() .. "\n" .. node:log())
  assert.equal(H.id_of(node), line.established.peer)
  return line.established.self
end

-- The same, and waits until the node lists the listener as a peer.
local function establish(node, l)
  local id = handshake(node, l)
  assert.truthy(H.wait_for(function()
    return node:eval(string.format("return network.get_peer(%q) ~= nil", id))
  end, 5), "the node does not list the listener as a peer")
  return id
end

-- The first log line of event `event` that contains every string in `needles`
-- (plain text), waiting up to 10 s for it.
local function log_line(node, event, needles)
  return H.wait_for(function()
    for line in node:log():gmatch("[^\n]+") do
      local ok = line:find("event=" .. event .. " ", 1, true) ~= nil
      for _, s in ipairs(needles or {}) do ok = ok and line:find(s, 1, true) ~= nil end
      if ok then return line end
    end
  end, 10)
end

local function peer_count(node)
  return node:eval("return #network.get_peers()")
end

describe("bt2cd's WebSocket client against a varied server #network", function()
  after_each(function()
    for _, l in ipairs(listeners) do l.stop() end
    listeners = {}
    H.cleanup()
  end)

  it("sends a proper upgrade request", function()
    -- a server that answers 403 shows the request head it got
    local l = spawn_listener({ "--bad-upgrade", "status" })
    local node = H.start()
    dial(node, l)
    local line = l.wait("request")
    assert.truthy(line, "no request: " .. l.describe())
    local hdr = {}
    for k, v in pairs(line.request) do hdr[k:lower()] = v end
    assert.equal("GET / HTTP/1.1", line.request_line)
    assert.equal("127.0.0.1:" .. l.port, hdr.host)
    assert.equal("websocket", hdr.upgrade:lower())
    assert.equal("upgrade", hdr.connection:lower())
    assert.equal("13", hdr["sec-websocket-version"])
    assert.equal("bt2c.v1", hdr["sec-websocket-protocol"])
    -- base64 of 16 random bytes (RFC 6455 4.1): 22 characters and "=="
    assert.equal(24, #hdr["sec-websocket-key"])
    assert.truthy(hdr["sec-websocket-key"]:match("^[A-Za-z0-9+/]+==$"), hdr["sec-websocket-key"])
    assert.is_nil(hdr["sec-websocket-extensions"]) -- none offered
  end)

  it("reassembles fragmented handshake messages from the server", function()
    local l = spawn_listener({ "--fragment" })
    local node = H.start()
    local id = establish(node, l) -- HELLO and AUTH came in 3 frames each
    assert.is_true(node:eval(string.format(
      'return network.send_message(%q, {type = "block", data = {height = 7}})', id)))
    local got = H.wait_for(function()
      for _, line in ipairs(l.lines()) do
        if line.message and line.message.types.block then return line.message end
      end
    end, 5)
    assert.truthy(got, "the listener got no block: " .. l.describe())
    assert.same({ 7 }, got.heights)
  end)

  it("speaks TLS on a wss:// dial (its own session), blocks arriving masked and intact", function()
    local dir = H.tmpdir()
    assert.equal(0, H.sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      .. "-keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem -days 2 -subj /CN=bt2c-test "
      .. ">/dev/null 2>&1"))
    local l = spawn_listener({ "--tls", dir .. "/cert.pem", dir .. "/key.pem", "--fragment" })
    local node = H.start()
    local id = establish(node, l)
    assert.is_true(node:eval(string.format([[
      local pad = string.rep("x", 960)
      for h = 1, 300 do
        assert(network.send_message(%q, {type = "block", data = {height = h, pad = pad}}))
      end
      return true]], id)))
    local function heights()
      local hs = {}
      for _, line in ipairs(l.lines()) do
        for _, h in ipairs(line.message and line.message.heights or {}) do hs[#hs + 1] = h end
      end
      return hs
    end
    assert.truthy(H.wait_for(function() return #heights() >= 300 end, 10),
      "the listener got " .. #heights() .. " of 300 blocks: " .. l.describe())
    local hs = heights()
    for i = 1, 300 do assert.equal(i, hs[i]) end
    assert.equal("wss://127.0.0.1:" .. l.port, node:eval(string.format(
      "return network.get_peer(%q).url", id)))
    H.rmtree(dir)
  end)

  it("gives up an upgrade the server never answers after connectionTimeout", function()
    local l = spawn_listener({ "--bad-upgrade", "silent" })
    local node = H.start({ config = { connectionTimeout = 1000 } })
    dial(node, l)
    assert.truthy(l.wait("request", 5), "no request: " .. l.describe())
    local line = log_line(node, "dial_failed", { "url=" .. l.url })
    assert.truthy(line, "no dial_failed: " .. node:log())
    assert.truthy(line:find("before the WebSocket upgrade completed", 1, true), line)
    assert.truthy(l.wait("eof", 5), "the node kept the connection: " .. l.describe())
    assert.equal(1, node:eval("return 1"))
  end)

  it("reports a wss:// dial to a listener without TLS as a TLS failure", function()
    local l = spawn_listener({})
    local node = H.start()
    local url = "wss://127.0.0.1:" .. l.port
    assert.is_true(node:eval(string.format("return network.connect(%q)", url)))
    local line = log_line(node, "dial_failed", { "url=" .. url })
    assert.truthy(line, "no dial_failed: " .. node:log())
    assert.truthy(line:find('why="TLS: ', 1, true), line)
    assert.is_nil(l.wait("established", 1))
  end)

  it("answers a ping with a pong carrying the same payload", function()
    local l = spawn_listener({ "--ping" })
    local node = H.start()
    local id = establish(node, l)
    -- websockets resolves the waiter only for a pong with the ping's payload
    local line = l.wait("pong", 8)
    assert.truthy(line, "no pong line: " .. l.describe())
    assert.is_true(line.pong)
    assert.is_true(node:eval(string.format("return network.get_peer(%q) ~= nil", id)))
  end)

  it("reports the server's close code and reason, and answers the close", function()
    local l = spawn_listener({ "--close", "4321", "--reason", "bye" })
    local node = H.start()
    local id = establish(node, l)
    local line = log_line(node, "peer_disconnected", { "peer=" .. id, "code=4321" })
    assert.truthy(line, "no peer_disconnected: " .. node:log())
    assert.truthy(line:find(" reason=bye ", 1, true), line)
    assert.truthy(line:find(" by=peer", 1, true), line)
    -- the node answered with a close frame (echoing the code, RFC 6455 5.5.1)
    local closed = l.wait("closed_by_us", 8)
    assert.truthy(closed, "listener did not finish its close: " .. l.describe())
    assert.equal(4321, closed.closed_by_us)
    assert.truthy(closed.answer ~= cjson.null, "the node sent no close frame back")
    assert.equal(4321, closed.answer.code)
    assert.truthy(H.wait_for(function() return peer_count(node) == 0 end, 5))
  end)

  -- what the listener writes, and the reason wsclient.c gives for it
  local BAD_FRAMES = {
    { "masked", "masked frame from the server" },
    { "rsv", "reserved bit set" },
    { "opcode", "unknown opcode" },
    { "long-ping", "control frame longer than 125 bytes" },
    { "bad-continuation", "continuation without a message" },
  }
  for _, case in ipairs(BAD_FRAMES) do
    local kind, why = case[1], case[2]
    it("closes with 1002 on a bad frame from the server: " .. kind, function()
      local l = spawn_listener({ "--bad-frame", kind })
      local node = H.start()
      -- the bad frame follows the handshake at once: the node may drop the
      -- peer before a console call could see it listed
      local id = handshake(node, l)
      local line = l.wait("closed", 8)
      assert.truthy(line, "the node did not close: " .. l.describe() .. "\n" .. node:log())
      assert.equal(1002, line.closed)
      assert.equal("bad frame: " .. why, line.reason)
      local logged = log_line(node, "invalid_frame", { "remote=127.0.0.1:" .. l.port })
      assert.truthy(logged, "no invalid_frame: " .. node:log())
      assert.truthy(logged:find(string.format('why="%s"', why), 1, true), logged)
      local gone = log_line(node, "peer_disconnected", { "peer=" .. id })
      assert.truthy(gone, "no peer_disconnected: " .. node:log())
      assert.truthy(gone:find(" code=1002 ", 1, true), gone)
      assert.truthy(gone:find(" by=us", 1, true), gone)
      assert.truthy(H.wait_for(function() return peer_count(node) == 0 end, 5))
    end)
  end

  it("refuses a message over maxMessageSize with 1009", function()
    local l = spawn_listener({ "--send-big", "200000", "--max-message-size", "300000" })
    local node = H.start({ config = { maxMessageSize = 65536 } })
    local id = handshake(node, l)
    local line = l.wait("closed", 8)
    assert.truthy(line, "the node did not close: " .. l.describe() .. "\n" .. node:log())
    assert.equal(1009, line.closed)
    assert.equal("message larger than 65536 bytes", line.reason)
    local gone = log_line(node, "peer_disconnected", { "peer=" .. id })
    assert.truthy(gone, "no peer_disconnected: " .. node:log())
    assert.truthy(gone:find(" code=1009 ", 1, true), gone)
  end)

  it("refuses a text message with 1003", function()
    local l = spawn_listener({ "--send-text" })
    local node = H.start()
    handshake(node, l)
    local line = l.wait("closed", 8)
    assert.truthy(line, "the node did not close: " .. l.describe() .. "\n" .. node:log())
    assert.equal(1003, line.closed)
    assert.equal("text messages are not used", line.reason)
  end)

  it("answers a close frame whose code is never sent with 1002", function()
    local l = spawn_listener({ "--bad-frame", "close-1005" })
    local node = H.start()
    local id = handshake(node, l)
    local line = l.wait("closed", 8)
    assert.truthy(line, "the node did not close: " .. l.describe() .. "\n" .. node:log())
    assert.equal(1002, line.closed)
    assert.equal("close frame with a code that is never sent", line.reason)
    local gone = log_line(node, "peer_disconnected", { "peer=" .. id })
    assert.truthy(gone, "no peer_disconnected: " .. node:log())
    assert.truthy(gone:find(" code=1002 ", 1, true), gone)
    assert.truthy(gone:find(" by=peer", 1, true), gone)
  end)

  -- the bad response, and the reason wsclient.c gives for refusing it
  local BAD_UPGRADES = {
    { "status", "status 403, not 101" },
    { "accept", "wrong Sec-WebSocket-Accept" },
    { "subprotocol", "no subprotocol in the response" },
    { "upgrade", "no Upgrade: websocket" },
  }
  for _, case in ipairs(BAD_UPGRADES) do
    local kind, why = case[1], case[2]
    it("refuses a bad upgrade response and hangs up: " .. kind, function()
      local l = spawn_listener({ "--bad-upgrade", kind })
      local node = H.start()
      dial(node, l)
      local line = log_line(node, "dial_failed", { "url=" .. l.url .. " " })
      assert.truthy(line, "no dial_failed: " .. node:log())
      assert.truthy(line:find(string.format('why="WebSocket upgrade refused: %s"', why), 1, true),
        line)
      assert.truthy(l.wait("request"), "listener got no request: " .. l.describe())
      local eof = l.wait("eof", 8)
      assert.truthy(eof, "the node kept the TCP connection open: " .. l.describe())
      assert.is_nil(eof.error)
      assert.equal(0, peer_count(node))
      assert.equal(1, node:eval("return 1"))
    end)
  end

  it("closes with a masked close frame the server accepts", function()
    local l = spawn_listener()
    local node = H.start()
    local id = establish(node, l)
    assert.is_true(node:eval(string.format("return network.disconnect(%q)", id)))
    -- lnetwork.c: a console disconnect closes with 1000 "disconnected by operator";
    -- websockets refuses an unmasked or malformed close frame with 1002
    local line = l.wait("closed", 8)
    assert.truthy(line, "the listener saw no close: " .. l.describe())
    assert.equal(1000, line.closed)
    assert.equal("disconnected by operator", line.reason)
    assert.equal(1000, line.sent.code) -- websockets answered it normally
    local gone = log_line(node, "peer_disconnected", { "peer=" .. id })
    assert.truthy(gone, "no peer_disconnected: " .. node:log())
    assert.truthy(gone:find(" code=1000 ", 1, true), gone)
    assert.truthy(gone:find(" by=us", 1, true), gone)
    assert.equal(0, peer_count(node))
  end)
end)
