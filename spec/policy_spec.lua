-- The policy host: loading the shipped policies, reload as an all-or-nothing
-- swap, line-precise errors, disabling failing hooks, counters, and
-- policy_check_dir (bt2cd --check-policies).
local bt2c = require "bt2c"

local SRC = os.getenv("BT2C_SOURCE") or "."
local SHIPPED = SRC .. "/policies"
local FILES = { "handshake", "scoring", "relay" }
local LIMITS = { instructions = 1000000, time_ms = 100, memory = 4 * 1024 * 1024, failures = 3 }
local ALL10 = {
  latency = 10, uptime = 10, blockPropagation = 10,
  transactionRelay = 10, validatorStatus = 10, behavior = 10,
}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local dirs = {}
local function policy_dir(overrides)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  dirs[#dirs + 1] = dir
  for _, f in ipairs(FILES) do
    local text = overrides and overrides[f]
    if text ~= false then
      write(dir .. "/" .. f .. ".lua", text or read(SHIPPED .. "/" .. f .. ".lua"))
    end
  end
  return dir
end

-- The shipped file with `old` replaced by `new` (plain text, must occur).
local function edited(file, old, new)
  local text = read(SHIPPED .. "/" .. file .. ".lua")
  local i, j = text:find(old, 1, true)
  assert(i, "no '" .. old .. "' in " .. file .. ".lua")
  return text:sub(1, i - 1) .. new .. text:sub(j + 1)
end

-- Line number of the first line of `text` containing `needle`.
local function line_of(text, needle)
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if line:find(needle, 1, true) then return n end
  end
  error("no line contains " .. needle)
end

local function handshake_info(overrides)
  local info = {
    node_id = string.rep("ab", 32), address = "10.0.0.2:8765", inbound = true,
    protocol_version = 1, network_id = "bt2c-testnet", local_network_id = "bt2c-testnet",
    clock_skew_ms = 120, metadata_json = '{"version":"1.0.0","isValidator":false}',
  }
  for k, v in pairs(overrides or {}) do info[k] = v end
  return info
end

teardown(function()
  for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end
end)

describe("policy host", function()
  it("answers with the seed defaults before any policy is loaded", function()
    local h = bt2c.policy_host(LIMITS, nil)
    assert.equal(0, h:generation())
    assert.equal("selective", h:select_mode("consensus_vote", { validators = 3 }))
    assert.near(100, h:total(ALL10), 1e-9)
    assert.equal(2, h:behavior_delta("GOOD_BLOCK", 0))
    assert.is_true(h:handshake(handshake_info()))
    local ok, why = h:handshake(handshake_info({ network_id = "other" }))
    assert.is_false(ok)
    assert.equal("network id mismatch", why)
    assert.same({}, h:stats())
    h:close()
  end)

  it("loads the shipped policies as generation 1 with the seed's values", function()
    local h = bt2c.policy_host(LIMITS, nil)
    local ok, errs = h:reload(SHIPPED)
    assert.same({}, errs)
    assert.is_true(ok)
    assert.equal(1, h:generation())

    local p = h:scoring_params()
    assert.same({
      latency = 0.2, uptime = 0.2, blockPropagation = 0.25,
      transactionRelay = 0.15, validatorStatus = 0.1, behavior = 0.1,
    }, p.weights)
    assert.equal(75, p.trusted)
    assert.equal(0, p.neutral)
    assert.equal(-50, p.banned)
    assert.equal(43200, p.ban_seconds)
    assert.equal(50, h:relay_threshold())
    assert.equal("selective", h:relay_mode())
    assert.same({ min_protocol = 1, max_protocol = 1, max_clock_skew_ms = 30000 },
      h:handshake_params())

    -- scoring: weighted sum, clamped
    assert.near(100, h:total(ALL10), 1e-9)
    assert.near(20, h:total({ latency = 10 }), 1e-9)
    assert.near(-100, h:total({ behavior = -5000 }), 1e-9)
    local seed = {
      GOOD_BLOCK = 2, BAD_BLOCK = -5, GOOD_TRANSACTION = 1, BAD_TRANSACTION = -2, SPAM = -10,
      INVALID_MESSAGE = -3, TIMEOUT = -1, DISCONNECT = -1, RECONNECT = 1, RELAY_SUCCESS = 1,
      RELAY_FAILURE = -1,
    }
    for name, delta in pairs(seed) do
      assert.equal(delta, h:behavior_delta(name, 0), name)
    end
    assert.equal(0, h:behavior_delta("NOT_A_BEHAVIOR", 0))

    -- relay: consensus traffic goes to validators when there are some
    assert.equal("validator_only", h:select_mode("consensus_vote", { validators = 2 }))
    assert.equal("validator_only", h:select_mode("consensus_proposal", { validators = 1 }))
    assert.equal("selective", h:select_mode("validator_set", { validators = 1 }))
    assert.equal("selective", h:select_mode("consensus_vote", { validators = 0 }))
    assert.equal("selective", h:select_mode("block", { validators = 5 }))
    assert.equal("selective", h:select_mode("transaction", { peers = 9 }))

    -- handshake
    assert.is_true(h:handshake(handshake_info()))
    local ok2, why = h:handshake(handshake_info({ network_id = "bt2c-mainnet" }))
    assert.is_false(ok2)
    assert.equal('network mismatch: peer is on "bt2c-mainnet", this node on "bt2c-testnet"', why)
    ok2, why = h:handshake(handshake_info({ protocol_version = 2 }))
    assert.is_false(ok2)
    assert.equal("protocol version 2 is outside [1, 1]", why)
    ok2, why = h:handshake(handshake_info({ clock_skew_ms = -45000 }))
    assert.is_false(ok2)
    assert.equal("clock skew of -45000 ms exceeds 30000 ms", why)

    -- scoring: the seed's mappings and the actions at the thresholds
    assert.same({ latency = 8, uptime = 8, blockPropagation = 10, transactionRelay = 9,
      validatorStatus = 0, behavior = 10 }, h:categories({ rtt_ms = 60, uptime = 0.97,
      blocks = { first = 6, duplicate = 4 }, transactions = { useful = 3, duplicate = 6 },
      behavior = 25 }))
    assert.same({ ban_seconds = 43200, disconnect = true },
      h:on_threshold(string.rep("a", 40), -55, "below_neutral", "banned"))
    assert.same({ ban_seconds = 0, disconnect = false },
      h:on_threshold(string.rep("a", 40), 80, "neutral", "trusted"))

    local s = h:stats()
    assert.same({ "handshake.validate", "relay.select_mode", "scoring.behavior_delta",
      "scoring.categories", "scoring.on_threshold", "scoring.total" }, (function()
        local keys = {}
        for k in pairs(s) do keys[#keys + 1] = k end
        table.sort(keys)
        return keys
      end)())
    assert.equal(4, s["handshake.validate"].calls)
    assert.equal(6, s["relay.select_mode"].calls)
    assert.equal(3, s["scoring.total"].calls)
    assert.equal(12, s["scoring.behavior_delta"].calls)
    for name, st in pairs(s) do
      assert.is_true(st.defined, name)
      assert.equal(0, st.errors + st.timeouts + st.oom + st.bad_returns + st.defaulted, name)
      assert.is_false(st.disabled, name)
      assert.is_true(st.time_ms >= 0 and st.time_ms < 1000, name)
      assert.is_true(st.memory > 0 and st.memory < LIMITS.memory, name)
    end
    assert.equal(SHIPPED .. "/relay.lua:" .. line_of(read(SHIPPED .. "/relay.lua"),
      "function M.select_mode"), s["relay.select_mode"].where)
    h:close()
  end)

  it("computes the default arithmetic the same in Lua and in C", function()
    -- the issue's example: latency 8, uptime 6, blockPropagation 7,
    -- transactionRelay 5, validatorStatus 0, behavior 10 with the seed's
    -- weights: 1.6 + 1.2 + 1.75 + 0.75 + 0 + 1.0 = 6.3 on the seed's 0..10
    -- scale, 63 on the -100..100 scale of the thresholds
    local example = { latency = 8, uptime = 6, blockPropagation = 7, transactionRelay = 5,
      validatorStatus = 0, behavior = 10 }
    local lua_host = bt2c.policy_host(LIMITS, nil)
    assert.is_true(lua_host:reload(policy_dir()))
    local c_host = bt2c.policy_host(LIMITS, nil)
    assert.is_true(c_host:reload(policy_dir({ scoring = "return {}\n" })))
    assert.near(63, lua_host:total(example), 1e-9)
    assert.near(63, c_host:total(example), 1e-9)
    local metrics = {
      { rtt_ms = 30, uptime = 1, blocks = { first = 9, duplicate = 1 }, behavior = 4 },
      { rtt_ms = 150, uptime = 0.85, transactions = { useful = 1, duplicate = 9, invalid = 1 } },
      { rtt_ms = 700, uptime = 0.5, blocks = { first = 0, duplicate = 5, invalid = 5 },
        validator = true, behavior = -70 },
      { uptime = 0 },
    }
    for i, m in ipairs(metrics) do
      assert.same(lua_host:categories(m), c_host:categories(m), "metrics " .. i)
    end
    assert.equal(0, c_host:stats()["scoring.total"] and c_host:stats()["scoring.total"].calls or 0)
    lua_host:close()
    c_host:close()
  end)

  it("makes a config holding lists of tables read-only (the default natTraversal)", function()
    -- regression: number keys of nested tables used to break the traversal
    local h = bt2c.policy_host(LIMITS,
      '{natTraversal={turnServers={{urls="turn:a:1",username="u"},{urls="turn:b:2"}}}}')
    assert.is_true(h:reload(policy_dir()))
    local st, urls = h:run("relay", "return config.natTraversal.turnServers[2].urls")
    assert.equal("ok", st)
    assert.same({ "turn:b:2" }, urls)
    st = h:run("relay", "config.natTraversal.turnServers[1].urls = 'x'")
    assert.equal("error", st)
    h:close()
  end)

  it("takes its defaults from the config literal", function()
    local lit = '{messageRelay={relayMode="flood",relayThreshold=20},peerScoring={weights={'
      .. 'latency=0.3,uptime=0.1,blockPropagation=0.25,transactionRelay=0.15,'
      .. 'validatorStatus=0.1,behavior=0.1},thresholds={trusted=80,neutral=5,banned=-40}}}'
    local h = bt2c.policy_host(LIMITS, lit)
    -- before loading: the C defaults read the same literal
    assert.equal("flood", h:select_mode("block", {}))
    assert.near(30, h:total({ latency = 10 }), 1e-9)
    assert.is_true(h:reload(SHIPPED))
    local p = h:scoring_params()
    assert.equal(0.3, p.weights.latency)
    assert.equal(0.1, p.weights.uptime)
    assert.equal(80, p.trusted)
    assert.equal(5, p.neutral)
    assert.equal(-40, p.banned)
    assert.equal("flood", h:relay_mode())
    assert.equal(20, h:relay_threshold())
    assert.equal("flood", h:select_mode("block", { validators = 1 }))
    assert.equal("validator_only", h:select_mode("consensus_vote", { validators = 1 }))
    assert.near(30, h:total({ latency = 10 }), 1e-9)
    h:close()
  end)

  it("fills keys missing from the literal with the seed defaults", function()
    local h = bt2c.policy_host(LIMITS, '{messageRelay={relayThreshold=10},peerScoring={}}')
    assert.is_true(h:reload(SHIPPED))
    assert.equal(10, h:relay_threshold())
    assert.equal("selective", h:relay_mode())
    assert.equal(0.25, h:scoring_params().weights.blockPropagation)
    assert.equal(75, h:scoring_params().trusted)
    h:close()
  end)

  it("refuses a config literal that is not a table", function()
    assert.has_error(function() bt2c.policy_host(LIMITS, "42") end,
      "policy_host_new failed (see the log)")
    assert.has_error(function() bt2c.policy_host(LIMITS, "{peerScoring={weights=3}}") end)
  end)

  it("swaps in a good modified set as generation 2", function()
    local h = bt2c.policy_host(LIMITS, nil)
    assert.is_true(h:reload(SHIPPED))
    assert.near(20, h:total({ latency = 10 }), 1e-9)
    local dir = policy_dir({
      scoring = edited("scoring", "latency = ps.weights.latency,\n    uptime = ps.weights.uptime,",
        "latency = 0.3,\n    uptime = 0.1,"),
      relay = edited("relay", "mode = mr.relayMode,", 'mode = "flood",'),
    })
    local ok, errs = h:reload(dir)
    assert.same({}, errs)
    assert.is_true(ok)
    assert.equal(2, h:generation())
    assert.equal(0.3, h:scoring_params().weights.latency)
    assert.near(30, h:total({ latency = 10 }), 1e-9)
    assert.equal("flood", h:select_mode("block", {}))
    assert.same({}, h:errors())
    h:close()
  end)

  it("keeps the running generation when a file has a syntax error", function()
    local h = bt2c.policy_host(LIMITS, nil)
    local good = policy_dir({ relay = edited("relay", "mode = mr.relayMode,", 'mode = "flood",') })
    assert.is_true(h:reload(good))
    assert.equal("flood", h:select_mode("block", {}))

    local broken = edited("relay", "threshold = mr.relayThreshold,", "threshold = = 3,")
    local dir = policy_dir({ relay = broken })
    local path = dir .. "/relay.lua"
    local ok, errs = h:reload(dir)
    assert.is_false(ok)
    local _, expected = load(broken, "@" .. path, "t")
    assert.same({ expected }, errs)
    assert.equal(path .. ":" .. line_of(broken, "threshold = = 3") .. ": unexpected symbol near '='",
      errs[1])
    -- the old generation keeps serving, with its values
    assert.equal(1, h:generation())
    assert.equal("flood", h:select_mode("block", {}))
    assert.equal("flood", h:relay_mode())
    assert.same(errs, h:errors())
    h:close()
  end)

  it("reports a runtime error in a file's top level with file:line", function()
    local text = edited("scoring", "local ps = config.peerScoring",
      "local ps = config.peerScoring\nlocal boom = ps.nothing.here")
    local dir = policy_dir({ scoring = text })
    local h = bt2c.policy_host(LIMITS, nil)
    local ok, errs = h:reload(dir)
    assert.is_false(ok)
    assert.same({ dir .. "/scoring.lua:" .. line_of(text, "local boom")
      .. ": attempt to index a nil value (field 'nothing')" }, errs)
    assert.equal(0, h:generation())
    h:close()
  end)

  it("applies the limits to a file's top level", function()
    local text = "while true do end\nreturn {}\n"
    local dir = policy_dir({ handshake = text })
    local h = bt2c.policy_host(LIMITS, nil)
    local t0 = bt2c.now()
    local ok, errs = h:reload(dir)
    local elapsed = bt2c.now() - t0
    assert.is_false(ok)
    assert.equal(1, #errs)
    assert.equal(dir .. "/handshake.lua:1: instruction budget exceeded (10000000 instructions per "
      .. "call): make the code cheaper or raise policyLimits.instructions (while running the "
      .. "file's top level, which gets 10x the per-call limits)", errs[1])
    assert.is_true(elapsed < 10 * LIMITS.time_ms * 10 / 1000)
    h:close()
  end)

  it("fails a partial set, naming the missing file", function()
    local dir = policy_dir({ relay = false })
    local h = bt2c.policy_host(LIMITS, nil)
    assert.is_true(h:reload(SHIPPED))
    local ok, errs = h:reload(dir)
    assert.is_false(ok)
    assert.same({ dir .. "/relay.lua: cannot read the policy file: No such file or directory "
      .. "(a policy directory needs handshake.lua, scoring.lua and relay.lua)" }, errs)
    assert.equal(1, h:generation())
    h:close()
  end)

  it("reports every bad tunable at its line", function()
    local scoring = edited("scoring", "latency = ps.weights.latency,", "latency = 0.5,")
    scoring = scoring:gsub("banned = ps.thresholds.banned,", "banned = 10,")
    scoring = scoring:gsub("SPAM = %-10,", "SPAM = -10,\n    GOOD_BLOK = 3,")
    scoring = scoring:gsub("RELAY_FAILURE = %-1,", "RELAY_FAILURE = 'bad',")
    scoring = scoring:gsub("ban_seconds = 43200,", "ban_seconds = 43200,\n  weigths = {},")
    local relay = edited("relay", "mode = mr.relayMode,", 'mode = "broadcast",')
    relay = relay:gsub("threshold = mr.relayThreshold,", "threshold = 150,")
    local handshake = edited("handshake", "min_protocol = 1,", "min_protocol = 3,")
    handshake = handshake:gsub("max_clock_skew_ms = 30000,", "max_clock_skew_ms = -1,")
    handshake = handshake:gsub("function M.validate", "M.validate = 7\nfunction M.unused")

    local dir = policy_dir({ scoring = scoring, relay = relay, handshake = handshake })
    local h = bt2c.policy_host(LIMITS, nil)
    assert.is_true(h:reload(SHIPPED))
    local ok, errs = h:reload(dir)
    assert.is_false(ok)
    local hs, sc, rl = dir .. "/handshake.lua:", dir .. "/scoring.lua:", dir .. "/relay.lua:"
    local expected = {
      hs .. line_of(handshake, "function M.unused") .. ": unknown key 'unused' (known keys: "
        .. "validate, min_protocol, max_protocol, max_clock_skew_ms)",
      hs .. line_of(handshake, "M.validate = 7") .. ": validate must be a function, got 7",
      hs .. line_of(handshake, "max_protocol = 1") .. ": max_protocol (1) must be >= min_protocol (3)",
      hs .. line_of(handshake, "max_clock_skew_ms = -1") .. ": max_clock_skew_ms must be a number "
        .. "in [0, 86400000], got -1",
      sc .. line_of(scoring, "weigths = {}") .. ": unknown key 'weigths' (did you mean 'weights'?)",
      sc .. line_of(scoring, "weights = {") .. ": weights must sum to 1 (within 0.001), they sum to 1.3",
      sc .. line_of(scoring, "thresholds = {") .. ": thresholds must satisfy banned < neutral < "
        .. "trusted, got banned=10 neutral=0 trusted=75",
      sc .. line_of(scoring, "GOOD_BLOK") .. ": unknown key 'behaviors.GOOD_BLOK' (did you mean "
        .. "'GOOD_BLOCK'?)",
      sc .. line_of(scoring, "RELAY_FAILURE = 'bad'") .. ": behaviors.RELAY_FAILURE must be a "
        .. "number in [-100, 100], got 'bad'",
      rl .. line_of(relay, 'mode = "broadcast"') .. ': mode must be "flood", "selective" or '
        .. "\"validator_only\", got 'broadcast'",
      rl .. line_of(relay, "threshold = 150") .. ": threshold must be a number in [-100, 100], "
        .. "got 150",
    }
    table.sort(errs)
    table.sort(expected)
    assert.same(expected, errs)
    assert.equal(1, h:generation())
    assert.equal(75, h:scoring_params().trusted)
    h:close()
  end)

  it("fails a hook that does not pass its self-test, at the hook's line", function()
    local relay = edited("relay", "  return M.mode\nend", "  return 42\nend")
    local dir = policy_dir({ relay = relay })
    local ok, errs = bt2c.policy_check_dir(LIMITS, nil, dir)
    assert.is_false(ok)
    assert.same({ dir .. "/relay.lua:" .. line_of(relay, "function M.select_mode")
      .. ': self-test relay.select_mode("block", {peers=8, validators=2, trusted=3}) failed '
      .. '(bad_return): relay.select_mode must return "flood", "selective" or "validator_only", '
      .. "got 42" }, errs)
  end)

  it("disables a failing hook after `failures` consecutive failures until a reload", function()
    -- Passes the self-test ("block"), fails on anything else.
    local relay = edited("relay", "  return M.mode\nend",
      '  if msg_type == "block" then return "flood" end\n  error("no verdict for " .. msg_type)\nend')
    local dir = policy_dir({ relay = relay })
    local h = bt2c.policy_host(LIMITS, nil)
    assert.is_true(h:reload(dir))
    assert.equal("flood", h:select_mode("block", {}))
    assert.equal("selective", h:select_mode("transaction", {})) -- failure 1: default
    assert.equal("flood", h:select_mode("block", {}))           -- success resets the streak
    for _ = 1, LIMITS.failures - 1 do
      assert.equal("selective", h:select_mode("transaction", {}))
    end
    local s = h:stats()["relay.select_mode"]
    assert.is_false(s.disabled)
    assert.equal(LIMITS.failures, s.errors)
    assert.equal(LIMITS.failures - 1, s.consecutive_failures)
    assert.equal(dir .. "/relay.lua:" .. line_of(relay, "error(\"no verdict")
      .. ": no verdict for transaction", s.last_error)

    assert.equal("selective", h:select_mode("transaction", {})) -- failure `failures` in a row
    s = h:stats()["relay.select_mode"]
    assert.is_true(s.disabled)
    -- switched off: even the answer it could give is now the C default
    assert.equal("selective", h:select_mode("block", {}))
    s = h:stats()["relay.select_mode"]
    assert.equal(LIMITS.failures + 1, s.errors)
    assert.equal(LIMITS.failures + 4, s.calls)
    assert.equal(LIMITS.failures + 2, s.defaulted)
    -- other hooks are unaffected
    assert.equal(4, h:behavior_delta("GOOD_BLOCK", 2) * 2)
    assert.is_false(h:stats()["scoring.behavior_delta"].disabled)
    assert.equal(0, h:stats()["scoring.behavior_delta"].defaulted)

    assert.is_true(h:reload(dir))
    assert.equal(2, h:generation())
    s = h:stats()["relay.select_mode"]
    assert.is_false(s.disabled)
    assert.equal(0, s.calls)
    assert.equal(0, s.errors)
    assert.equal("flood", h:select_mode("block", {}))
    h:close()
  end)

  it("keeps answers consistent across call, reload, call", function()
    local h = bt2c.policy_host(LIMITS, nil)
    local a = policy_dir({ relay = edited("relay", "mode = mr.relayMode,", 'mode = "flood",') })
    local b = policy_dir({
      relay = edited("relay", "mode = mr.relayMode,", 'mode = "validator_only",'),
      scoring = edited("scoring", "GOOD_BLOCK = 2,", "GOOD_BLOCK = 4,"),
    })
    local broken = policy_dir({ scoring = "return {" })
    assert.is_true(h:reload(a))
    for i = 1, 20 do
      local dir = ({ a, b, broken })[i % 3 + 1]
      local before_gen = h:generation()
      local before = { h:select_mode("block", {}), h:behavior_delta("GOOD_BLOCK", 0) }
      local ok = h:reload(dir)
      local after = { h:select_mode("block", {}), h:behavior_delta("GOOD_BLOCK", 0) }
      if dir == broken then
        assert.is_false(ok)
        assert.equal(before_gen, h:generation())
        assert.same(before, after)
      elseif dir == a then
        assert.is_true(ok)
        assert.same({ "flood", 2 }, after)
      else
        assert.is_true(ok)
        assert.same({ "validator_only", 4 }, after)
      end
    end
    assert.equal(1 + 13, h:generation()) -- 1 initial + the 13 of 20 that were good
    h:close()
  end)

  it("counts a hook the policy does not define as silent defaults", function()
    local relay = "return { mode = 'flood', threshold = 10 }\n"
    local dir = policy_dir({ relay = relay })
    local h = bt2c.policy_host(LIMITS, nil)
    assert.is_true(h:reload(dir))
    assert.equal("flood", h:select_mode("consensus_vote", { validators = 4 }))
    assert.equal(10, h:relay_threshold())
    local s = h:stats()["relay.select_mode"]
    assert.is_false(s.defined)
    assert.equal(0, s.calls)
    assert.equal(0, s.defaulted)
    h:close()
  end)

  it("checks a directory without swapping (bt2cd --check-policies)", function()
    local ok, errs = bt2c.policy_check_dir(LIMITS, nil, SHIPPED)
    assert.is_true(ok)
    assert.same({}, errs)
    local dir = policy_dir({ handshake = "return {", relay = false })
    ok, errs = bt2c.policy_check_dir(LIMITS, nil, dir)
    assert.is_false(ok)
    table.sort(errs)
    assert.same({
      dir .. "/handshake.lua:1: unexpected symbol near <eof>",
      dir .. "/relay.lua: cannot read the policy file: No such file or directory (a policy "
        .. "directory needs handshake.lua, scoring.lua and relay.lua)",
    }, errs)
    ok, errs = bt2c.policy_check_dir(LIMITS, "nope(", SHIPPED)
    assert.is_false(ok)
    assert.equal(1, #errs)
    assert.matches("^config:", errs[1])
  end)
end)
