-- Functional: SIGHUP reloads the policies, SIGTERM/SIGINT stop the node
-- gracefully; a broken policy never takes a running node down.
local H = require "helpers.node"
local sys = H.sys

local function generation(node)
  return node:eval("return policy.generation()")
end

local function set_weight(dir, value)
  local path = dir .. "/scoring.lua"
  local src = H.read_file(path)
  local patched, n = src:gsub("latency%s*=%s*[%w%._]+", "latency = " .. value, 1)
  assert(n == 1, "scoring.lua has no latency weight to patch")
  H.write_file(path, patched)
end

describe("signals", function()
  after_each(function() H.cleanup() end)

  it("SIGHUP activates good policies and keeps the old generation on broken ones", function()
    local node = H.start()
    local pdir = node.conf.policyDir
    assert.equal(1, generation(node))
    local good_relay = H.read_file(pdir .. "/relay.lua")

    -- broken file: the node stays up on generation 1 and says where
    H.write_file(pdir .. "/relay.lua", "local M = {}\nM.mode = \n")
    node:signal("HUP")
    assert.truthy(node:wait_log("event=policy_reload_failed", 5))
    assert.matches("relay.lua:3:", node:log(), 1, true)
    assert.is_true(sys.alive(node.pid))
    assert.equal(1, generation(node))

    -- fixed: generation 2
    H.write_file(pdir .. "/relay.lua", good_relay)
    node:signal("HUP")
    assert.truthy(H.wait_for(function() return generation(node) == 2 end, 5))
    assert.truthy(node:log():find("event=policy_reloaded generation=2", 1, true))
    assert.same({ exited = true, code = 0 }, node:stop())
  end)

  it("policy.reload() reports errors to the console caller", function()
    local node = H.start()
    local pdir = node.conf.policyDir
    H.write_file(pdir .. "/handshake.lua", "return {\n  validate = 42,\n}\n")
    local r = node:eval("return policy.reload()")
    assert.is_false(r.ok)
    assert.equal(1, r.generation)
    assert.is_true(#r.errors >= 1)
    assert.matches("handshake.lua:2:", r.errors[1], 1, true)
    os.remove(pdir .. "/handshake.lua")
    H.sh("cp " .. H.shell_quote(H.SOURCE .. "/policies/handshake.lua") .. " "
      .. H.shell_quote(pdir .. "/handshake.lua"))
    r = node:eval("return policy.reload()")
    assert.is_true(r.ok)
    assert.equal(2, r.generation)
    assert.same({}, r.errors)
  end)

  it("reloads while the node is busy and does not drop the busy caller", function()
    local node = H.start({ config = { consoleTimeout = 5000 } })
    set_weight(node.conf.policyDir, "0.2")
    -- a command that keeps the loop busy for 1 s while SIGHUP arrives
    local conn = assert(sys.unix_connect(node.socket))
    local chunk = "local t = os.clock() + 1 while os.clock() < t do end return 'done'"
    conn:send(string.format("eval %d\n%s", #chunk, chunk))
    sys.sleep(0.2)
    node:signal("HUP")
    local reply = conn:recv(5)
    conn:close()
    assert.equal("ok 4\ndone", reply)
    assert.truthy(H.wait_for(function() return generation(node) == 2 end, 5))
  end)

  for _, sig in ipairs({ "TERM", "INT" }) do
    it("SIG" .. sig .. " stops the node gracefully with status 0", function()
      local node = H.start()
      local conn = assert(sys.unix_connect(node.socket)) -- an open session
      assert.truthy(sys.stat(node.socket))
      node:signal(sig)
      local st = sys.wait(node.pid, 10)
      node.status = st
      conn:close()
      assert.same({ exited = true, code = 0 }, st)
      assert.is_nil(sys.stat(node.socket))
      assert.truthy(node:log():find("event=node_stopped", 1, true))
    end)
  end

  it("refuses to start on broken policies, naming the problem", function()
    local dir = H.tmpdir()
    local pdir = H.copy_policies(dir)
    H.write_file(pdir .. "/scoring.lua", "return {\n  weights = 'heavy',\n}\n")
    local node = H.start({ dir = dir, policies = pdir, wait = false })
    local st = sys.wait(node.pid, 10)
    node.status = st
    assert.same({ exited = true, code = 1 }, st)
    assert.matches("scoring.lua:2:", node:log(), 1, true)
    assert.truthy(node:log():find("event=start_failed", 1, true))
  end)
end)

describe("a runaway policy in a live node", function()
  after_each(function() H.cleanup() end)

  it("costs at most its budget per call, then is switched off, and the node keeps serving", function()
    local dir = H.tmpdir()
    local pdir = H.copy_policies(dir)
    H.write_file(pdir .. "/handshake.lua", table.concat({
      "local M = {}",
      "local armed = false",
      "function M.validate(info)",
      "  if not armed then armed = true return true end -- the load-time self-test",
      "  while true do end",
      "end",
      "return M",
    }, "\n"))
    local a = H.start({ dir = dir, policies = pdir,
      config = { policyLimits = { time = 50, failures = 5 } } })
    local url = "ws://127.0.0.1:" .. a.port
    for _ = 1, 7 do H.start({ config = { bootstrapPeers = { url } } }) end
    -- every handshake completes: the C default (same network) accepts
    assert.truthy(H.wait_for(function()
      return a:eval("return network.get_network_status().peers.inbound") == 7
    end, 20))
    local st = a:eval('return policy.errors()["handshake.validate"]')
    -- five calls ran into the budget; the last two found the hook switched off
    assert.equal(7, st.calls)
    assert.equal(5, st.timeouts)
    assert.equal(7, st.defaulted)
    assert.is_true(st.disabled)
    assert.is_true(st.time_ms <= 5 * 50, "spent " .. st.time_ms .. " ms")
    assert.truthy(a:log():find("handshake.lua:5: instruction budget exceeded", 1, true))
    -- the console still answers promptly
    local t0 = sys.now()
    assert.equal(1, a:eval("return 1"))
    assert.is_true(sys.now() - t0 < 2)
  end)
end)
