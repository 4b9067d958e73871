-- The policy sandbox: an escape catalogue run inside a live policy state
-- (after each attempt the same host must still answer its hooks correctly),
-- budgets that a pcall cannot swallow, memory bombs, pattern bombs, and
-- typed hooks returning garbage.
local bt2c = require "bt2c"

local SRC = os.getenv("BT2C_SOURCE") or "."
local SHIPPED = SRC .. "/policies"
-- ASan/UBSan builds run several times slower; budgets stay, bounds widen.
local SLOW = os.getenv("BT2C_SANITIZE") and 4 or 1
local LIMITS = { instructions = 1000000, time_ms = 100, memory = 2 * 1024 * 1024, failures = 1000 }
local MAX_MS = 10 * LIMITS.time_ms * SLOW -- "well under 10x the time budget"

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local dirs = {}
local function policy_dir(overrides)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  dirs[#dirs + 1] = dir
  for _, f in ipairs({ "handshake", "scoring", "relay" }) do
    write(dir .. "/" .. f .. ".lua", overrides[f] or read(SHIPPED .. "/" .. f .. ".lua"))
  end
  return dir
end

teardown(function()
  for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end
end)

local host
local function still_works()
  assert.equal("validator_only", host:select_mode("consensus_vote", { validators = 1 }))
  assert.equal("selective", host:select_mode("block", { validators = 1 }))
  assert.near(20, host:total({ latency = 10 }), 1e-9)
  assert.equal(-10, host:behavior_delta("SPAM", 0))
  assert.is_true(host:handshake({ network_id = "n", local_network_id = "n", protocol_version = 1,
    clock_skew_ms = 0 }))
  local mem = host:stats()["relay.select_mode"].memory
  assert.is_true(mem < 512 * 1024, "relay state holds " .. mem .. " bytes")
end

-- { name, code, expected status, pattern the message must match (or a
-- function checking the results) }
local catalogue = {
  -- globals
  { "replace a global", "print = nil", "error", "cannot assign global 'print'" },
  { "replace _G", "_G = {}", "error", "cannot assign global '_G'" },
  { "create a global", "x = 1", "error", "assignment to undeclared global 'x'" },
  { "create a global through _G", "_G.y = 1", "error", "assignment to undeclared global 'y'" },
  { "read an undefined global", "return undefined_thing", "error",
    "undefined global 'undefined_thing'" },
  { "rawset into _G", "rawset(_G, 'print', 1)", "error", "rawset: the table is read%-only" },
  { "drop the globals' metatable", "setmetatable(_G, nil)", "error",
    "setmetatable: the table is read%-only" },
  { "_ENV swap stays local", "local _ENV = { x = 1 }; return x", "ok",
    function(r) assert.same({ 1 }, r) end },
  -- library tables
  { "replace string.rep", "string.rep = function() return '' end", "error",
    "cannot assign string.rep: 'string' is read%-only" },
  { "rawset a library function", "rawset(string, 'rep', print)", "error",
    "rawset: the table is read%-only" },
  { "replace table.insert", "table.insert = print", "error", "cannot assign table.insert" },
  { "replace math.floor", "math.floor = nil", "error", "cannot assign math.floor" },
  { "table.insert into a library", "table.insert(string, 1)", "error", "cannot assign string.1" },
  { "metatable of a library", "return getmetatable(string), getmetatable(math).__index", "ok",
    function(r) assert.same({ "read-only" }, r) end },
  { "setmetatable on a library", "setmetatable(string, {})", "error",
    "setmetatable: the table is read%-only" },
  { "pairs does not hand out the real table",
    "local _, t = pairs(string); local n = 0; for _ in pairs(string) do n = n + 1 end; "
      .. "return t == string, n", "ok",
    function(r) assert.same({ true, 16 }, r) end },
  { "config is read-only", "config.messageRelay.relayMode = 'flood'", "error",
    "cannot assign config.messageRelay.relayMode" },
  { "config via rawset", "rawset(config.peerScoring.weights, 'latency', 1)", "error",
    "rawset: the table is read%-only" },
  -- the string metatable
  { "string metatable is locked", "return getmetatable(''), type(getmetatable('').__index)", "ok",
    function(r) assert.same({ "locked", "nil" }, r) end },
  { "write the string metatable", "getmetatable('').__index = {}", "error",
    "attempt to index a string value" },
  { "string methods are the guarded ones",
    "return ('x'):rep(3), ('a.b'):find('.', 1, true), ('k=v'):match('^(%w+)=(%w+)$')", "ok",
    function(r) assert.same({ "xxx", 2, "k", "v" }, r) end },
  -- code loading and missing libraries
  { "string.dump", "return string.dump(function() end)", "error",
    "attempt to call a nil value %(field 'dump'%)" },
  { "io", "return io.open('/etc/passwd')", "error", "undefined global 'io'" },
  { "os", "return os.execute('true')", "error", "undefined global 'os'" },
  { "require", "return require('os')", "error", "undefined global 'require'" },
  { "package", "return package.loaded", "error", "undefined global 'package'" },
  { "debug", "return debug.getmetatable(string)", "error", "undefined global 'debug'" },
  { "coroutine", "return coroutine.create(print)", "error", "undefined global 'coroutine'" },
  { "dofile", "return dofile('/etc/passwd')", "error", "undefined global 'dofile'" },
  { "loadfile", "return loadfile('/etc/passwd')", "error", "undefined global 'loadfile'" },
  { "load", "return load('return 1')", "error", "undefined global 'load'" },
  { "collectgarbage", "collectgarbage('stop')", "error", "undefined global 'collectgarbage'" },
  { "a __gc finalizer", "setmetatable({}, { __gc = function() while true do end end })", "error",
    "__gc finalizers are not allowed" },
  -- budgets a pcall cannot swallow
  { "infinite loop", "while true do end", "timeout", "instruction budget exceeded" },
  { "infinite loop inside pcall", "while true do pcall(function() while true do end end) end",
    "timeout", "instruction budget exceeded" },
  { "pcall, then return", "pcall(function() while true do end end); return 1", "timeout",
    "instruction budget exceeded" },
  { "xpcall handler loop",
    "xpcall(function() error('x') end, function() while true do end end); return 1", "timeout",
    "instruction budget exceeded" },
  { "nested xpcall handlers",
    "local function h() while true do xpcall(h, h) end end; "
      .. "while true do xpcall(h, h) end", "timeout", "budget exceeded" },
  { "to-be-closed handler loop",
    "local x <close> = setmetatable({}, { __close = function() while true do end end }); "
      .. "while true do end", "timeout", "instruction budget exceeded" },
  { "__tostring loop in an error object",
    "error(setmetatable({}, { __tostring = function() while true do end end }))", "error",
    "%(error object is a table value%)" },
  { "__tostring loop via tostring",
    "return tostring(setmetatable({}, { __tostring = function() while true do end end }))",
    "timeout", "instruction budget exceeded" },
  { "comparator loop in table.sort",
    "table.sort({ 3, 2, 1 }, function() while true do end end)", "timeout",
    "instruction budget exceeded" },
  { "runaway recursion", "local function f() return 1 + f() end; return f()", "oom",
    "out of memory" },
  { "runaway metamethod recursion",
    "local t = setmetatable({}, { __index = function(t, k) return t[k] end }); return t.x",
    "error", "stack overflow" },
  -- memory
  { "string.rep bomb", "return string.rep('x', 2^30)", "oom", "out of memory" },
  { "string.rep bomb caught by pcall", "local ok = pcall(string.rep, 'x', 2^30); return ok", "oom",
    "out of memory" },
  { "table growth", "local t = {}; for i = 1, 1e9 do t[i] = i end", "oom", "out of memory" },
  { "table of tables", "local t = {}; while true do t[#t + 1] = { 1, 2, 3 } end", "oom",
    "out of memory" },
  { "string concatenation", "local s = 'x'; while true do s = s .. s end", "oom",
    "out of memory" },
  { "growth under pcall in a loop",
    "while true do pcall(function() local t = {} while true do t[#t + 1] = 'x' .. #t end end) end",
    "oom", "out of memory" },
  -- pattern bombs
  { "catastrophic find", "return string.rep('a', 5000):find('.-.-.-.-b')", "error",
    "string.find: pattern '.%-.%-.%-.%-b' is too costly on a 5000%-byte subject" },
  { "catastrophic find, method syntax", "local s = string.rep('a', 5000); return s:find('.-.-.-.-b')",
    "error", "string.find: pattern" },
  { "catastrophic match", "return ('a'):rep(5000):match('(.*)(.*)(.*)b')", "error",
    "string.match: pattern" },
  { "catastrophic gmatch", "for _ in ('a'):rep(5000):gmatch('.-.-.-x') do end", "error",
    "string.gmatch: pattern" },
  { "catastrophic gsub", "return (('a'):rep(5000):gsub('.*.*.*b', ''))", "error",
    "string.gsub: pattern" },
  { "an ordinary parse still works",
    "return ('10.0.0.1:8765'):match('^(%d+)%.(%d+)%.(%d+)%.(%d+):(%d+)$')", "ok",
    function(r) assert.same({ "10", "0", "0", "1", "8765" }, r) end },
}

describe("policy sandbox", function()
  setup(function()
    host = bt2c.policy_host(LIMITS, nil)
    assert.is_true(host:reload(SHIPPED))
  end)

  teardown(function() host:close() end)

  it("has a catalogue of at least 15 escape attempts", function()
    assert.is_true(#catalogue >= 15)
  end)

  for _, case in ipairs(catalogue) do
    local name, code, want, check = case[1], case[2], case[3], case[4]
    it("refuses: " .. name, function()
      local status, res, ms = host:run("relay", code)
      assert.equal(want, status, type(res) == "string" and res or nil)
      if type(check) == "function" then
        check(res)
      else
        assert.is_string(res)
        assert.matches(check, res)
      end
      assert.is_true(ms < MAX_MS, name .. " took " .. ms .. " ms")
      still_works()
    end)
  end

  it("stops at the wall-clock deadline when instructions are plentiful", function()
    local status, msg, ms = bt2c.sandbox_run("while true do end",
      { instructions = 1e12, time_ms = 30, memory = 1024 * 1024 })
    assert.equal("timeout", status)
    assert.matches("time budget exceeded %(30 ms per call%)", msg)
    assert.is_true(ms >= 30 and ms < 10 * 30 * SLOW, "took " .. ms .. " ms")
  end)

  -- Few instructions, much C time per instruction: the clock is read on
  -- every function call, not only every 1000 instructions.
  for name, code in pairs({
    ["sorting in a loop"] = "local t = {} for i = 1, 2e5 do t[i] = (i * 7919) % 100003 end "
      .. "while true do table.sort(t, nil) end",
    ["slow patterns in a loop"] = "local s = ('a'):rep(2000) while true do s:find('a.-b') end",
    ["string building in a loop"] = "while true do local _ = ('x'):rep(4e6) end",
  }) do
    it("stops " .. name .. " at the deadline", function()
      local status, msg, ms = bt2c.sandbox_run(code,
        { instructions = 1e12, time_ms = 50, memory = 16 * 1024 * 1024 })
      assert.equal("timeout", status, msg)
      assert.matches("time budget exceeded %(50 ms per call%)", msg)
      assert.is_true(ms >= 50 and ms < 10 * 50 * SLOW, "took " .. ms .. " ms")
    end)
  end

  it("classifies each outcome of a raw sandbox run", function()
    local lim = { instructions = 100000, time_ms = 50, memory = 1024 * 1024 }
    local st, res = bt2c.sandbox_run("return 1, 'two', { 3 }, nil, true", lim)
    assert.equal("ok", st)
    assert.same({ 1, "two", { 3 }, nil, true }, res)
    st, res = bt2c.sandbox_run("error('boom')", lim)
    assert.equal("error", st)
    assert.matches("^sandbox_run:1: boom\nstack traceback:", res)
    st, res = bt2c.sandbox_run("for i = 1, 1e9 do end", lim)
    assert.equal("timeout", st)
    assert.matches("^sandbox_run:1: instruction budget exceeded %(100000 instructions", res)
    st, res = bt2c.sandbox_run("return ('x'):rep(2^21)", lim)
    assert.equal("oom", st)
    assert.equal("out of memory: the state reached its cap of 1048576 bytes (policyLimits.memory)",
      res)
  end)

  it("refuses binary chunks", function()
    local chunk = string.dump(function() return 1 end)
    local st, msg = bt2c.sandbox_run(chunk, LIMITS)
    assert.equal("error", st)
    assert.matches("attempt to load a binary chunk %(mode is 't'%)", msg)
    st, msg = host:run("relay", chunk)
    assert.equal("error", st)
    assert.matches("attempt to load a binary chunk", msg)
    still_works()
  end)

  it("refuses a binary policy file", function()
    local dir = policy_dir({ relay = string.dump(function() return {} end) })
    local ok, errs = bt2c.policy_check_dir(LIMITS, nil, dir)
    assert.is_false(ok)
    assert.equal(1, #errs)
    assert.matches("relay.lua", errs[1], 1, true)
  end)

  it("reclaims memory after a bomb", function()
    local before = host:stats()["relay.select_mode"].memory
    for _ = 1, 3 do
      assert.equal("oom", (host:run("relay", "local t = {} while true do t[#t + 1] = {} end")))
    end
    local after = host:stats()["relay.select_mode"].memory
    assert.is_true(after < before + 64 * 1024, ("before %d after %d"):format(before, after))
    still_works()
  end)

  it("estimates pattern costs", function()
    assert.equal(5001, bt2c.pattern_cost(5000, "plain text"))
    assert.is_true(bt2c.pattern_cost(5000, ".-.-.-.-b") > 1e18)
    assert.is_true(bt2c.pattern_cost(21, "(%d+)%.(%d+)%.(%d+)%.(%d+):(%d+)") < 1e4)
    assert.is_true(bt2c.pattern_cost(300, "^(%w+)%s*=%s*(.*)$") < 1e5)
    -- anchoring removes the start positions
    assert.is_true(bt2c.pattern_cost(1000, "^a.*b") * 500 < bt2c.pattern_cost(1000, "a.*b"))
    -- gmatch ignores '^' as an anchor
    assert.is_true(bt2c.pattern_cost(1000, "^a.*b", false) > bt2c.pattern_cost(1000, "^a.*b"))
    assert.equal(math.huge, bt2c.pattern_cost(10, "(" .. string.rep("a?", 3000) .. ")"))
  end)
end)

-- Hooks that misbehave on purpose, on arguments the self-test does not use.
local BAD_RELAY = [[
local M = { mode = "selective", threshold = 50 }
function M.select_mode(msg_type, situation)
  if msg_type == "t_number" then return 42 end
  if msg_type == "t_unknown" then return "broadcast" end
  if msg_type == "t_nil" then return nil end
  if msg_type == "t_error" then error("relay exploded") end
  if msg_type == "t_loop" then while true do end end
  if msg_type == "t_oom" then return string.rep("x", 2^30) end
  if msg_type == "t_pcall_oom" then pcall(string.rep, "x", 2^30) return "flood" end
  if msg_type == "t_table" then return {} end
  if situation.validators > 100 then return "validator_only" end
  return "flood"
end
return M
]]

local BAD_SCORING = [[
local M = {}
function M.total(c)
  if c.latency == 1 then return 0 / 0 end
  if c.latency == 2 then return 1e9 end
  if c.latency == 3 then return "5" end
  if c.latency == 4 then return math.huge end
  if c.latency == 5 and c.uptime == 6 then return -101 end
  return 42
end
function M.behavior_delta(name, total)
  if name == "NAN" then return 0 / 0 end
  if name == "BIG" then return 500 end
  if name == "STR" then return "1" end
  if name == "NONE" then return end
  return total + 1
end
return M
]]

local BAD_HANDSHAKE = [[
local M = {}
function M.validate(info)
  if info.node_id == "yes" then return "yes" end
  if info.node_id == "noreason" then return false end
  if info.node_id == "tablereason" then return false, {} end
  if info.node_id == "err" then error({ code = 1 }) end
  if info.node_id == "refuse" then return false, "not today" end
  return true
end
return M
]]

describe("typed hooks returning garbage", function()
  local h
  setup(function()
    h = bt2c.policy_host(LIMITS, nil)
    local ok, errs = h:reload(policy_dir({
      relay = BAD_RELAY, scoring = BAD_SCORING, handshake = BAD_HANDSHAKE,
    }))
    assert.same({}, errs)
    assert.is_true(ok)
  end)
  teardown(function() h:close() end)

  local function counters(name)
    local s = h:stats()[name]
    return { calls = s.calls, errors = s.errors, timeouts = s.timeouts, oom = s.oom,
      bad_returns = s.bad_returns, defaulted = s.defaulted }
  end

  it("relay.select_mode falls back to the configured mode", function()
    local cases = {
      { "t_number", "bad_returns" }, { "t_error", "errors" }, { "t_unknown", "bad_returns" },
      { "t_loop", "timeouts" }, { "t_nil", "bad_returns" }, { "t_oom", "oom" },
      { "t_pcall_oom", "oom" }, { "t_table", "bad_returns" },
    }
    local want = { calls = 0, errors = 0, timeouts = 0, oom = 0, bad_returns = 0, defaulted = 0 }
    for _, case in ipairs(cases) do
      local msg_type, kind = case[1], case[2]
      local t0 = bt2c.now()
      assert.equal("selective", h:select_mode(msg_type, { validators = 0 }), msg_type)
      local ms = (bt2c.now() - t0) * 1000
      assert.is_true(ms < MAX_MS, msg_type .. " took " .. ms .. " ms")
      want.calls, want.defaulted, want[kind] = want.calls + 1, want.defaulted + 1, want[kind] + 1
      assert.same(want, counters("relay.select_mode"), msg_type)
    end
    -- good answers still come through
    assert.equal("flood", h:select_mode("block", { validators = 0 }))
    assert.equal("validator_only", h:select_mode("block", { validators = 101 }))
    local s = h:stats()["relay.select_mode"]
    assert.equal(10, s.calls)
    assert.equal(8, s.defaulted)
    assert.is_false(s.disabled)
    assert.is_true(s.time_ms < 2 * MAX_MS)
    assert.equal('relay.select_mode must return "flood", "selective" or "validator_only", '
      .. "got a table", s.last_error)
  end)

  it("scoring.total falls back to the weighted sum", function()
    for latency = 1, 4 do
      assert.near(2 * latency, h:total({ latency = latency }), 1e-9)
    end
    assert.near(10 * (5 * 0.2 + 6 * 0.2), h:total({ latency = 5, uptime = 6 }), 1e-9)
    assert.equal(42, h:total({ latency = 9 }))
    assert.same({ calls = 6, errors = 0, timeouts = 0, oom = 0, bad_returns = 5, defaulted = 5 },
      counters("scoring.total"))
    assert.equal("scoring.total must return a finite number in [-100, 100], got -101",
      h:stats()["scoring.total"].last_error)
  end)

  it("scoring.behavior_delta falls back to the behaviors table", function()
    for _, name in ipairs({ "NAN", "BIG", "STR", "NONE" }) do
      assert.equal(0, h:behavior_delta(name, 10), name) -- unknown names: 0
    end
    assert.equal(11, h:behavior_delta("GOOD_BLOCK", 10))
    assert.same({ calls = 5, errors = 0, timeouts = 0, oom = 0, bad_returns = 4, defaulted = 4 },
      counters("scoring.behavior_delta"))
  end)

  it("handshake.validate falls back to comparing network ids", function()
    local function info(id, net)
      return { node_id = id, network_id = net or "n", local_network_id = "n",
        protocol_version = 1, clock_skew_ms = 0 }
    end
    assert.is_true(h:handshake(info("yes")))
    assert.is_true(h:handshake(info("noreason")))
    assert.is_true(h:handshake(info("tablereason")))
    assert.is_true(h:handshake(info("err")))
    local ok, why = h:handshake(info("err", "other"))
    assert.is_false(ok)
    assert.equal("network id mismatch", why)
    ok, why = h:handshake(info("refuse"))
    assert.is_false(ok)
    assert.equal("not today", why)
    assert.same({ calls = 6, errors = 2, timeouts = 0, oom = 0, bad_returns = 3, defaulted = 5 },
      counters("handshake.validate"))
    assert.matches("%(error object is a table value%)",
      h:stats()["handshake.validate"].last_error)
  end)
end)
