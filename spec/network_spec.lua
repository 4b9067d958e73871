-- Functional: real bt2cd processes connecting over 127.0.0.1 — handshakes,
-- topologies, limits, persistent peers and restarts from the peer store.
local H = require "helpers.node"
local sys = H.sys

local url, id_of = H.url, H.id_of

local function peers(node)
  local list = node:eval("return network.get_peers()")
  local by_id = {}
  for _, p in ipairs(list) do by_id[p.id] = p end
  return by_id, #list
end

local function counts(node)
  return node:eval("return network.get_network_status().peers")
end

local function wait_peers(node, n, timeout)
  return H.wait_for(function()
    local c = counts(node)
    return c.total >= n and c
  end, timeout or 10, 0.1)
end

describe("network", function()
  after_each(function() H.cleanup() end)

  it("two nodes handshake and see each other with the right directions", function()
    local a = H.start()
    local b = H.start({ config = { bootstrapPeers = { url(a) } } })
    assert.truthy(wait_peers(a, 1))
    assert.truthy(wait_peers(b, 1))
    local pa = peers(a)[id_of(b)]
    local pb = peers(b)[id_of(a)]
    assert.equal("inbound", pa.direction)
    assert.equal("outbound", pb.direction)
    assert.equal("established", pa.state)
    assert.equal(url(a), pb.url)
    assert.equal(url(b), pa.url) -- learned from the hello's listenPort
    assert.equal(1, pa.version)
    assert.same({ version = "1.0.0", isValidator = false }, pa.metadata)
    -- messages both ways reach the application, once
    assert.is_true(a:eval([[got = {} network.on("message:transaction", function(id, m)
      got[#got + 1] = {from = id, data = m.data} end) return true]]))
    assert.is_true(b:eval(string.format(
      'return network.send_message(%q, {type = "transaction", data = {hash = "t1", amount = 5}})', id_of(a))))
    local got = H.wait_for(function()
      local g = a:eval("return got")
      return #g > 0 and g
    end, 5)
    assert.same({ { from = id_of(b), data = { hash = "t1", amount = 5 } } }, got)
  end)

  it("connects over wss:// when the listener has a certificate", function()
    local dir = H.tmpdir()
    assert.equal(0, H.sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      .. "-keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem -days 2 -subj /CN=bt2c-test "
      .. ">/dev/null 2>&1"))
    local a = H.start({ dir = dir, config = { tls = { cert = "cert.pem", key = "key.pem" } } })
    local b = H.start({ config = { bootstrapPeers = { "wss://127.0.0.1:" .. a.port } } })
    assert.truthy(wait_peers(b, 1))
    local pb = peers(b)[id_of(a)]
    assert.equal("wss://127.0.0.1:" .. a.port, pb.url)
    -- a, seen from b's peers, is advertised with its scheme
    local c = H.start()
    assert.is_true(c:eval(string.format("return network.connect(%q)", url(b))))
    assert.truthy(wait_peers(c, 2, 20)) -- c learns a from b and dials wss://
    assert.equal("wss://127.0.0.1:" .. a.port, peers(c)[id_of(a)].url)
    -- a plain ws:// dial to a TLS port fails cleanly
    local d = H.start()
    d:eval(string.format("return network.connect(%q)", url(a)))
    assert.truthy(d:wait_log("event=dial_failed url=" .. url(a), 10))
    assert.equal(0, counts(d).total)
  end)

  it("shares a rate-limited health summary (NETWORK_STATUS) with its peers", function()
    local a = H.start()
    local b = H.start({ config = { bootstrapPeers = { url(a) } } })
    assert.truthy(wait_peers(a, 1))
    local st = H.wait_for(function()
      local p = peers(a)[id_of(b)]
      return p and p.status
    end, 10)
    assert.truthy(st, "no NETWORK_STATUS within 10 s")
    assert.equal(1, st.peers)
    assert.equal(0, st.height)
    assert.matches("^%d+%.%d+%.%d+$", st.version)
    -- more than one per 10 s from a peer is ignored and counted
    local before = a:eval("return network.get_network_status().counters.invalidMessages")
    b:eval(string.format([[for i = 1, 5 do
      network.send_message(%q, {type = "network_status", data = {peers = i, height = 0}})
    end return true]], id_of(a)))
    assert.truthy(H.wait_for(function()
      return a:eval("return network.get_network_status().counters.invalidMessages") >= before + 3
    end, 5))
  end)

  it("refuses a connection to itself and a duplicate connection", function()
    local a = H.start()
    assert.is_true(a:eval(string.format("return network.connect(%q)", url(a))))
    assert.truthy(a:wait_log("code=4004 why=\"connection to self\"", 5))
    assert.equal(0, counts(a).total)
    local b = H.start()
    -- both dial each other at once: exactly one connection survives
    a:eval(string.format("return network.connect(%q)", url(b)))
    b:eval(string.format("return network.connect(%q)", url(a)))
    assert.truthy(wait_peers(a, 1))
    sys.sleep(1)
    assert.equal(1, counts(a).total)
    assert.equal(1, counts(b).total)
  end)

  it("builds a 3-node line when the limits allow only that", function()
    local a = H.start({ config = { maxPeers = 1, maxInbound = 1, maxOutbound = 0 } })
    local b = H.start({ config = { maxPeers = 2, maxInbound = 1, maxOutbound = 1,
      bootstrapPeers = { url(a) } } })
    local c = H.start({ config = { maxPeers = 1, maxInbound = 0, maxOutbound = 1,
      bootstrapPeers = { url(b) } } })
    assert.truthy(wait_peers(b, 2))
    assert.truthy(peers(b)[id_of(a)])
    assert.truthy(peers(b)[id_of(c)])
    assert.is_nil(peers(a)[id_of(c)])
    assert.is_nil(peers(c)[id_of(a)])
    -- b's broadcast reaches both ends
    for _, n in ipairs({ a, c }) do
      n:eval([[got = 0 network.on("message:block", function() got = got + 1 end) return true]])
    end
    assert.equal(2, b:eval('return network.broadcast_message({type = "block", data = {height = 1}})'))
    assert.truthy(H.wait_for(function()
      return a:eval("return got") == 1 and c:eval("return got") == 1
    end, 5))
  end)

  it("ten nodes that know one bootstrap node all reach at least 3 peers", function()
    local fast = { peerDiscoveryInterval = 300000 }
    local boot = H.start({ config = fast })
    local nodes = { boot }
    for i = 2, 10 do
      nodes[i] = H.start({ config = { bootstrapPeers = { url(boot) }, peerDiscoveryInterval = 300000 } })
    end
    local ok = H.wait_for(function()
      for _, n in ipairs(nodes) do
        if counts(n).total < 3 then return false end
      end
      return true
    end, 40, 0.5)
    local totals = {}
    for i, n in ipairs(nodes) do totals[i] = counts(n).total end
    assert.truthy(ok, "peer counts: " .. table.concat(totals, ","))
  end)

  it("holds maxInbound and maxOutbound when three times as many nodes try", function()
    local a = H.start({ config = { maxPeers = 5, maxInbound = 3, maxOutbound = 2 } })
    local others = {}
    for i = 1, 9 do
      others[i] = H.start({ config = { bootstrapPeers = { url(a) } } })
    end
    local max_in, max_out = 0, 0
    local deadline = sys.now() + 6
    while sys.now() < deadline do
      local c = counts(a)
      max_in = math.max(max_in, c.inbound)
      max_out = math.max(max_out, c.outbound)
      sys.sleep(0.2)
    end
    local c = counts(a)
    assert.is_true(max_in <= 3, "inbound reached " .. max_in)
    assert.is_true(max_out <= 2, "outbound reached " .. max_out)
    assert.equal(3, c.inbound)
    assert.truthy(a:log():find("code=4006", 1, true))
    -- a node with room for 2 outbound peers and 9 candidates dials only 2
    local urls = {}
    for i = 1, 9 do urls[i] = url(others[i]) end
    local d = H.start({ config = { maxOutbound = 2, bootstrapPeers = urls } })
    max_out = 0
    deadline = sys.now() + 4
    while sys.now() < deadline do
      max_out = math.max(max_out, counts(d).outbound)
      sys.sleep(0.2)
    end
    assert.equal(2, counts(d).outbound)
    assert.is_true(max_out <= 2)
  end)

  it("drops a peer that does not drain its send queue, and stays bounded", function()
    local a = H.start()
    local out = a.dir .. "/stall.out"
    local pid = sys.spawn({ argv = { "/usr/bin/python3", H.SOURCE .. "/tools/pyclient/attack.py",
      "stall", "--url", url(a), "--timeout", "20" }, stdout = out, stderr = a.dir .. "/stall.err" })
    local id = H.wait_for(function()
      local text = H.read_file(out) or ""
      return text:match('"established": "(%x+)"')
    end, 10)
    assert.truthy(id, "the stalling client did not connect")
    assert.truthy(H.wait_for(function() return peers(a)[id] end, 5))
    -- 48 MiB of 16 KiB blocks: the kernel buffers take some, the 8 MiB queue the rest
    local blob = string.rep("x", 16000)
    local sent = a:eval(string.format([[
      local n = 0
      for i = 1, 3072 do
        if not network.send_message(%q, {type = "block", data = {i = i, pad = %q}}) then break end
        n = i
      end
      return n]], id, blob))
    assert.truthy(a:wait_log("code=4009", 10), "sent " .. tostring(sent) .. " blocks")
    assert.truthy(a:log():find('reason="send queue overflow"', 1, true))
    assert.is_nil(peers(a)[id])
    assert.is_true(sent < 3072, "the node kept queueing for a peer that does not read")
    -- the node is fine and its memory did not run away
    local rss = tonumber(H.read_file("/proc/" .. a.pid .. "/status"):match("VmRSS:%s+(%d+)"))
    assert.is_true(rss < 200 * 1024, "VmRSS " .. rss .. " kB")
    sys.kill(pid, "KILL")
    sys.wait(pid, 5)
  end)

  it("redials a persistent peer that restarts, with visible backoff", function()
    local b = H.start()
    local b_url = url(b)
    local a = H.start({ config = { persistentPeers = { b_url } } })
    assert.truthy(wait_peers(a, 1))
    local b_dir, b_port = b.dir, b.port
    assert.same({ exited = true, code = 0 }, b:stop())
    -- attempts back off: 1 s, 2 s, 4 s (each with +-20 % jitter)
    assert.truthy(a:wait_log("attempt=3", 15))
    local log = a:log()
    assert.truthy(log:find("event=persistent_redial url=" .. b_url .. " attempt=1 in_s=[%d.]+ backoff_s=1"))
    assert.truthy(log:find("attempt=2 in_s=[%d.]+ backoff_s=2"))
    assert.truthy(log:find("attempt=3 in_s=[%d.]+ backoff_s=4"))
    -- the same node comes back on the same port and data directory
    local b2 = H.start({ dir = b_dir, policies = b_dir .. "/policies", config = { port = b_port } })
    assert.equal(id_of(b), id_of(b2))
    assert.truthy(wait_peers(a, 1, 15))
    assert.truthy(peers(a)[id_of(b2)])
  end)

  it("reconnects to its previous peers after kill -9, with no bootstrap peers", function()
    -- b and c never dial: only a's memory can bring the connections back
    local b = H.start({ config = { maxOutbound = 0 } })
    local c = H.start({ config = { maxOutbound = 0 } })
    local a = H.start({ config = { bootstrapPeers = { url(b) } } })
    a:eval(string.format("return network.connect(%q)", url(c)))
    assert.truthy(wait_peers(a, 2))
    sys.sleep(2.5) -- the store flushes every 2 s
    a:kill("KILL")
    a.status = { killed = true }
    -- restart with the same data directory and no bootstrap peers at all
    local a2 = H.start({ dir = a.dir, policies = a.dir .. "/policies", config = { port = a.port } })
    assert.truthy(wait_peers(a2, 2, 15))
    local p = peers(a2)
    assert.truthy(p[id_of(b)])
    assert.truthy(p[id_of(c)])
    assert.equal("outbound", p[id_of(b)].direction)
    assert.equal("outbound", p[id_of(c)].direction)
    assert.equal("anchor", p[id_of(b)].source)
  end)
end)
