-- Functional: an independent client written in Python from docs/PROTOCOL.md
-- alone (tools/pyclient) talks to a real bt2cd. If these fail while the node's
-- own specs pass, the node and the document disagree.
local H = require "helpers.node"
local sys = H.sys
local cjson = require "cjson"

local PYTHON = "/usr/bin/python3" -- Debian's, with python3-websockets and python3-cryptography
local CLIENT = H.SOURCE .. "/tools/pyclient/bt2c_client.py"
local SELF_TEST = H.SOURCE .. "/tools/pyclient/test_codec.py"

local url = H.url

local function network_id(node) return node.conf.networkId or "bt2c-mainnet" end

-- The client prints one JSON object per line on stdout.
local function json_lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  return out
end

local function client_argv(node, args)
  local argv = { PYTHON, CLIENT, "--url", url(node), "--network-id", network_id(node) }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return argv
end

-- Runs the client to the end; returns exit code, decoded stdout lines, stderr.
local function run_client(node, args)
  local code, out, err = H.run(client_argv(node, args))
  return code, json_lines(out), err
end

-- Starts the client in the background.
local function spawn_client(node, args)
  local dir = H.tmpdir()
  local c = { dir = dir, out = dir .. "/out", err = dir .. "/err" }
  c.pid = sys.spawn({ argv = client_argv(node, args), stdout = c.out, stderr = c.err })
  function c.lines() return json_lines(H.read_file(c.out)) end
  function c.stderr() return H.read_file(c.err) or "" end
  -- Waits for the line that has `key`; returns its value.
  function c.wait_line(key, timeout)
    return H.wait_for(function()
      for _, l in ipairs(c.lines()) do
        if l[key] ~= nil then return l[key] end
      end
    end, timeout or 10)
  end
  function c.finish(timeout)
    local st = sys.wait(c.pid, timeout or 15)
    if not st then
      sys.kill(c.pid, "KILL")
      st = sys.wait(c.pid, 5)
    end
    return st
  end
  function c.stop()
    sys.kill(c.pid, "TERM")
    return c.finish(5)
  end
  function c.cleanup() H.rmtree(dir) end
  return c
end

local function find_peer(node, id)
  return H.wait_for(function()
    for _, p in ipairs(node:eval("return network.get_peers()") or {}) do
      if p.id == id then return p end
    end
  end, 10)
end

describe("pyclient codec", function()
  it("passes its self-test (section 9 example, batches, transcript, signatures)", function()
    local code, out, err = H.run({ PYTHON, SELF_TEST })
    assert.equal(0, code, out .. err)
  end)
end)

-- NODE-DEPENDENT: everything below needs bt2cd's networking (listener and
-- handshake), which is being implemented concurrently; until it lands these
-- are expected to fail. Tagged #network (busted --exclude-tags=network).
describe("pyclient against bt2cd #network", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() H.cleanup() end)

  it("completes the handshake and is listed as an inbound peer", function()
    local c = spawn_client(node, { "--expect", "block", "--timeout", "30" })
    local est = c.wait_line("established")
    assert.truthy(est, "no handshake: " .. c.stderr())
    assert.matches("^%x+$", est.self)
    assert.equal(40, #est.self)
    local peer = find_peer(node, est.self)
    assert.truthy(peer, "client not in network.get_peers()")
    assert.equal("inbound", peer.direction)
    c.stop()
    c.cleanup()
  end)

  it("exchanges messages both ways", function()
    assert.is_true(node:eval([[got = {}
      network.on("message:transaction", function(peer_id, msg) got[#got + 1] = msg end)
      return true]]))
    local tx_json = '{"hash":"' .. string.rep("ab", 32) .. '","from":"alice","to":"bob",'
      .. '"amount":1.5,"fee":0.01,"nonce":3,"timestamp":1764000000000}'
    local tx = cjson.decode(tx_json)
    local c = spawn_client(node, { "--send", "transaction", tx_json,
      "--expect", "block", "--timeout", "30" })
    local est = c.wait_line("established")
    assert.truthy(est, "no handshake: " .. c.stderr())

    -- client -> node
    local got = H.wait_for(function()
      local g = node:eval("return got")
      return type(g) == "table" and #g > 0 and g
    end, 10)
    assert.truthy(got, "the node's handler saw no transaction")
    assert.equal("transaction", got[1].type)
    assert.same(tx, got[1].data)

    -- node -> client
    local sent = node:eval(string.format(
      'return network.send_message(%q, {type = "block", data = {height = 5}})', est.self))
    assert.truthy(sent)
    local st = c.finish(15)
    assert.same({ exited = true, code = 0 }, st, c.stderr())
    local block
    for _, l in ipairs(c.lines()) do
      if l.type == "block" then block = l end
    end
    assert.truthy(block, "client printed no block")
    assert.equal(est.peer, block.origin)
    assert.same({ height = 5 }, block.data)
    c.cleanup()
  end)

  it("answers the client's ping", function()
    local code, lines, err = run_client(node, { "--ping", "--timeout", "10" })
    assert.equal(0, code, err)
    assert.truthy(lines[#lines].pong)
  end)

  describe("refuses", function()
    local function closed_with(args)
      local code, lines, err = run_client(node, args)
      assert.equal(0, code, "client: " .. err)
      return lines[#lines].closed, lines[#lines].reason
    end

    it("a bad signature with 4001", function()
      assert.equal(4001, (closed_with({ "--mode", "bad-signature" })))
    end)

    it("a replayed handshake with 4001", function()
      local dir = H.tmpdir()
      local code, _, err = run_client(node, { "--record", dir .. "/hs.json" })
      assert.equal(0, code, err)
      assert.equal(4001, (closed_with({ "--mode", "replay", "--replay-file", dir .. "/hs.json" })))
      H.rmtree(dir)
    end)

    it("another network with 4002", function()
      assert.equal(4002, (closed_with({ "--mode", "wrong-network" })))
    end)

    it("a message before the handshake with 4000", function()
      assert.equal(4000, (closed_with({ "--mode", "no-handshake" })))
    end)
  end)
end)
