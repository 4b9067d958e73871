-- Functional: MessageRelay across real bt2cd processes on 127.0.0.1 — gossip
-- in a triangle, a ring and a random graph (delivered once, traffic stops),
-- VALIDATOR_ONLY through a validator backbone, the hop limit, path exclusion
-- and direct relay with receipts.
--
-- Environment: RF_LOG=info gives the nodes' logs more detail (BT2C_KEEP=1
-- keeps them); RF_DEBUG=1 prints, for the SELECTIVE run, every node's view
-- of its peers (score, messages out/in) and the coverage of each block.
--
-- Topologies are forced: every node's maxOutbound/maxInbound/maxPeers are
-- exactly the number of connections it dials/accepts, so peer exchange finds
-- no free slot, and the spec waits until each node is connected to exactly
-- its intended neighbours before sending anything.
local H = require "helpers.node"
local sys = H.sys

local url, id_of, peer_ids = H.url, H.id_of, H.peer_ids

-- The relay counters of the message types these tests send (other traffic,
-- such as NAT advertisements, is left out of the totals).
local function stats(node)
  local s = node:eval("return relay.get_stats()")
  local total = { received = 0, delivered = 0, relayed = 0, duplicates = 0 }
  for _, t in ipairs({ "block", "transaction", "consensus_vote" }) do
    local b = s.byType[t]
    if b then
      for k in pairs(total) do total[k] = total[k] + b[k] end
    end
  end
  for k, v in pairs(total) do s[k] = v end
  return s
end

-- Starts nodes 1..n in order and connects them as `edges` says ({a, b}:
-- an undirected edge; the node started later dials the earlier one, listed
-- in its persistentPeers, so every dial finds its target up). config: a
-- table of configuration keys, or function(i, nodes) returning one (nodes
-- 1..i-1 are already up). opts.start(i): extra H.start options (dir,
-- policies) for node i. Returns the nodes, each with .nbrs (set of
-- neighbour indices).
local function build(n, edges, config, opts)
  local outd, ind, nbrs, dials = {}, {}, {}, {}
  for i = 1, n do outd[i], ind[i], nbrs[i], dials[i] = 0, 0, {}, {} end
  for _, e in ipairs(edges) do
    local a, b = math.max(e[1], e[2]), math.min(e[1], e[2])
    assert(a ~= b and not nbrs[a][b], "bad edge list")
    outd[a], ind[b] = outd[a] + 1, ind[b] + 1
    nbrs[a][b], nbrs[b][a] = true, true
    dials[a][#dials[a] + 1] = b
  end
  local nodes = {}
  for i = 1, n do
    local urls = {}
    for k, j in ipairs(dials[i]) do urls[k] = url(nodes[j]) end
    local c = { logLevel = os.getenv("RF_LOG") or "warn", maxOutbound = outd[i], maxInbound = ind[i],
      maxPeers = outd[i] + ind[i], persistentPeers = urls }
    local extra = type(config) == "function" and config(i, nodes) or config or {}
    for k, v in pairs(extra) do c[k] = v end
    local o = opts and opts.start and opts.start(i) or {}
    o.config = c
    nodes[i] = H.start(o)
    nodes[i].index, nodes[i].nbrs = i, nbrs[i]
  end
  local index = {}
  for i = 1, n do index[id_of(nodes[i])] = i end
  local wrong
  local ok = H.wait_for(function()
    for i = 1, n do
      local have, count = {}, 0
      for _, pid in ipairs(peer_ids(nodes[i])) do
        have[index[pid] or pid], count = true, count + 1
      end
      local want = 0
      for j in pairs(nbrs[i]) do
        want = want + 1
        if not have[j] then wrong = "node " .. i .. " lacks " .. j return false end
      end
      if count ~= want then
        wrong = "node " .. i .. " has " .. count .. " peers, wants " .. want
        return false
      end
    end
    return true
  end, 30, 0.2)
  assert(ok, "topology did not form: " .. tostring(wrong))
  return nodes
end

-- Installs a recorder for `type` on every node: got = {{from, id, origin,
-- hops, seq}, ...} in delivery order.
local function record(nodes, type)
  for _, node in ipairs(nodes) do
    assert.is_true(node:eval(string.format([[
      got = {}
      network.off("message:%s")
      network.on("message:%s", function(from, m)
        got[#got + 1] = {from = from, id = m.id, origin = m.origin, hops = m.hops,
          seq = type(m.data) == "table" and m.data.seq or nil}
      end)
      return true]], type, type)))
  end
end

local function got(node) return node:eval("return got") end
local function ngot(node) return node:eval("return #got") end

-- Polls the relay counters of all nodes until they have not moved for
-- `quiet` seconds: the traffic stopped. Returns the final stats per node.
local function settle(nodes, quiet, timeout)
  quiet = quiet or 1.0
  local last, since
  local final
  local ok = H.wait_for(function()
    local all, key = {}, {}
    for i, node in ipairs(nodes) do
      all[i] = stats(node)
      key[i] = all[i].received .. "/" .. all[i].relayed .. "/" .. all[i].duplicates
    end
    key = table.concat(key, " ")
    if key ~= last then
      last, since = key, sys.now()
      return false
    end
    final = all
    return sys.now() - since >= quiet
  end, timeout or 20, 0.2)
  assert(ok, "relay traffic did not stop: " .. tostring(last))
  return final
end

-- How many (node, peer) links have a peer score at or above relayThreshold
-- (the SELECTIVE criterion), and how many links there are.
local function links_at_threshold(nodes)
  local above, links = 0, 0
  for _, node in ipairs(nodes) do
    local r = node:eval([[local th, a, n = config.messageRelay.relayThreshold, 0, 0
      for _, p in ipairs(network.get_peers()) do
        n = n + 1
        local s = scoring.get_score(p.id)
        if s and s.total_score >= th then a = a + 1 end
      end
      return {a, n}]])
    above, links = above + r[1], links + r[2]
  end
  return above, links
end

local function sum(list, field)
  local s = 0
  for _, x in ipairs(list) do s = s + x[field] end
  return s
end

local FLOOD = { relayMode = "flood" }

describe("relay flow", function()
  after_each(function() H.cleanup() end)

  it("triangle: a broadcast reaches each other node once, and stops", function()
    local ns = build(3, { { 1, 2 }, { 1, 3 }, { 2, 3 } }, { messageRelay = FLOOD })
    record(ns, "block")
    assert.equal(2, ns[1]:eval('return network.broadcast_message({type = "block", data = {seq = 1}})'))
    assert.truthy(H.wait_for(function() return ngot(ns[2]) >= 1 and ngot(ns[3]) >= 1 end, 10))
    local st = settle(ns)
    assert.same({}, got(ns[1]))
    for i = 2, 3 do
      local g = got(ns[i])
      assert.equal(1, #g, "node " .. i)
      assert.equal(1, g[1].seq)
      assert.equal(id_of(ns[1]), g[1].origin)
      assert.equal(1, st[i].delivered)
      assert.is_true(st[i].relayed <= 1) -- forwards once, to the one peer not the origin
      assert.is_true(st[i].duplicates <= 1)
      assert.equal(st[i].received, st[i].delivered + st[i].duplicates)
    end
    -- nothing goes back to the origin, and every send is accounted for
    assert.equal(0, st[1].received)
    assert.equal(2 + sum(st, "relayed"), sum(st, "received"))
  end)

  it("ring of 6: each node's broadcast reaches the 5 others once, no loop", function()
    local edges = {}
    for i = 1, 6 do edges[i] = { i, i % 6 + 1 } end
    -- hops are not what stops it here: 8 would go round the ring
    local ns = build(6, edges, { messageRelay = { relayMode = "flood", maxRelayHops = 8 } })
    for i = 1, 6 do assert.equal(2, #peer_ids(ns[i])) end
    record(ns, "block")
    local sent = 0
    for i = 1, 6 do
      sent = sent + ns[i]:eval(string.format(
        'return network.broadcast_message({type = "block", data = {seq = %d}})', i))
    end
    assert.equal(12, sent)
    assert.truthy(H.wait_for(function()
      for i = 1, 6 do if ngot(ns[i]) < 5 then return false end end
      return true
    end, 10))
    local st = settle(ns, 1.5)
    for i = 1, 6 do
      local seqs = {}
      for _, m in ipairs(got(ns[i])) do
        assert.is_nil(seqs[m.seq], "node " .. i .. " got block " .. m.seq .. " twice")
        seqs[m.seq] = true
        assert.is_true(m.hops <= 4)
      end
      for s = 1, 6 do assert.equal(s ~= i, seqs[s] == true, "node " .. i .. " block " .. s) end
      assert.equal(5, st[i].delivered)
      -- each of the 5 foreign blocks forwarded at most once, to one peer
      assert.is_true(st[i].relayed <= 5, "node " .. i .. " relayed " .. st[i].relayed)
      assert.is_true(st[i].duplicates <= 5, "node " .. i .. " duplicates " .. st[i].duplicates)
    end
    -- per block the two wave fronts meet once, which costs 2 duplicates
    local dups = sum(st, "duplicates")
    assert.is_true(dups >= 6 and dups <= 12, "duplicates " .. dups)
    assert.equal(sent + sum(st, "relayed"), sum(st, "received"))
  end)

  -- A random graph of 20 nodes, each dialling 3 others; 100 blocks from
  -- random origins. Returns per-node deliveries and a summary.
  local function random_graph_run(config, seed)
    local rng_state = seed
    local function rnd(n) -- small LCG: the same graph whatever math.random does
      rng_state = (rng_state * 1103515245 + 12345) % 2147483648
      return rng_state % n + 1
    end
    local N, DIAL, M = 20, 3, 100
    local edges, used
    repeat
      edges, used = {}, {}
      local adj = {}
      for i = 1, N do adj[i] = {} end
      for i = 1, N do
        local k = 0
        while k < DIAL do
          local j = rnd(N)
          local key = math.min(i, j) .. "-" .. math.max(i, j)
          if j ~= i and not used[key] then
            used[key] = true
            edges[#edges + 1] = { i, j }
            adj[i][#adj[i] + 1], adj[j][#adj[j] + 1] = j, i
            k = k + 1
          end
        end
      end
      local seen, queue = { [1] = true }, { 1 }
      for _, v in ipairs(queue) do
        for _, w in ipairs(adj[v]) do
          if not seen[w] then seen[w] = true queue[#queue + 1] = w end
        end
      end
    until #queue == N
    local ns = build(N, edges, config)
    -- the graph as the nodes see it is connected (build checked it is the intended one)
    local index = {}
    for i = 1, N do index[id_of(ns[i])] = i end
    local seen, queue = { [1] = true }, { 1 }
    for _, v in ipairs(queue) do
      for _, pid in ipairs(peer_ids(ns[v])) do
        local w = index[pid]
        if not seen[w] then seen[w] = true queue[#queue + 1] = w end
      end
    end
    assert.equal(N, #queue, "graph not connected")
    record(ns, "block")
    local above_before = links_at_threshold(ns)
    local own = {}
    for i = 1, N do own[i] = {} end
    for s = 1, M do
      local o = rnd(N)
      own[o][s] = true
      local n = ns[o]:eval(string.format(
        'return network.broadcast_message({type = "block", data = {seq = %d, height = %d}})', s, s))
      assert.is_true(n >= 1)
    end
    local want = {}
    for i = 1, N do
      want[i] = M
      for _ in pairs(own[i]) do want[i] = want[i] - 1 end
    end
    -- until every node has its blocks, or the deliveries stop growing for 2 s
    local last, since = -1, sys.now()
    H.wait_for(function()
      local complete, total = true, 0
      for i = 1, N do
        local g = ngot(ns[i])
        total = total + g
        if g < want[i] then complete = false end
      end
      if total ~= last then last, since = total, sys.now() end
      return complete or sys.now() - since >= 2
    end, 20, 0.25)
    local st = settle(ns, 1.5, 30)
    local above_after, links = links_at_threshold(ns)
    local per, total, dups = {}, 0, 0
    for i = 1, N do
      per[i] = { got = got(ns[i]), want = want[i], own = own[i], stats = st[i] }
      total = total + #per[i].got
      dups = dups + st[i].duplicates
    end
    return per, { deliveries = total, expected = M * N - M, duplicates = dups,
      relayed = sum(st, "relayed"), edges = #edges, nodes = ns,
      above_before = above_before, above_after = above_after, links = links }
  end

  local function check_exactly_once(per)
    for i, p in ipairs(per) do
      local ids, seqs, n = {}, {}, 0
      for _, m in ipairs(p.got) do
        assert.is_nil(ids[m.id], "node " .. i .. " got message " .. m.id .. " twice")
        assert.is_nil(seqs[m.seq], "node " .. i .. " got block " .. tostring(m.seq) .. " twice")
        ids[m.id], seqs[m.seq], n = true, true, n + 1
      end
      for s = 1, 100 do
        assert.equal(not p.own[s], seqs[s] == true, "node " .. i .. " block " .. s)
      end
      assert.equal(p.want, n)
    end
  end

  it("random graph of 20 (FLOOD): 100 blocks, each delivered to every node once", function()
    local per, sumry = random_graph_run({ messageRelay = { relayMode = "flood", maxRelayHops = 8 } }, 7)
    check_exactly_once(per)
    print(string.format(
      "\nFLOOD 20 nodes/%d edges: %d/%d deliveries, %d duplicates (%.2f per delivery), %d relayed",
      sumry.edges, sumry.deliveries, sumry.expected, sumry.duplicates,
      sumry.duplicates / sumry.deliveries, sumry.relayed))
    assert.equal(sumry.expected, sumry.deliveries)
  end)

  it("random graph of 20 (SELECTIVE): 100 blocks, coverage", function()
    local per, sumry = random_graph_run({ messageRelay = { maxRelayHops = 8 } }, 7)
    print(string.format(
      "\nSELECTIVE 20 nodes/%d edges: %d/%d deliveries, %d duplicates (%.2f per delivery), %d relayed",
      sumry.edges, sumry.deliveries, sumry.expected, sumry.duplicates,
      sumry.duplicates / math.max(1, sumry.deliveries), sumry.relayed))
    -- whatever the coverage, nothing is ever delivered twice
    for i, p in ipairs(per) do
      local ids = {}
      for _, m in ipairs(p.got) do
        assert.is_nil(ids[m.id], "node " .. i .. " got message " .. m.id .. " twice")
        ids[m.id] = true
      end
    end
    -- what SELECTIVE did: per block coverage, who missed, and the scores
    -- each node gives its peers (the input of its target choice)
    local reached, missed = {}, {}
    for s = 1, 100 do reached[s] = 1 end
    for i, p in ipairs(per) do
      missed[i] = p.want - #p.got
      for _, m in ipairs(p.got) do reached[m.seq] = reached[m.seq] + 1 end
    end
    local partial, first_partial, last_partial = 0, nil, nil
    for s = 1, 100 do
      if reached[s] < 20 then
        partial = partial + 1
        first_partial, last_partial = first_partial or s, s
      end
    end
    print(string.format("SELECTIVE: %d/100 blocks missed someone (blocks %s..%s); missed per node: %s",
      partial, tostring(first_partial), tostring(last_partial), table.concat(missed, ",")))
    if os.getenv("RF_DEBUG") then
      for i, p in ipairs(per) do
        local sc = sumry.nodes[i]:eval([[local t = {} for _, p in ipairs(network.get_peers()) do
          t[#t + 1] = p.id:sub(1, 6) .. ":" .. math.floor(scoring.get_score(p.id).total_score + 0.5)
          .. "/out" .. p.messagesOut .. "/in" .. p.messagesIn end return t]])
        print("node " .. i .. " " .. sumry.nodes[i].id:sub(1, 6) .. " missed " .. missed[i]
          .. " peers " .. table.concat(sc, " ")
          .. " relayed " .. p.stats.relayed .. " dropped.no_target " .. p.stats.dropped.no_target)
      end
      local cov = {}
      for s = 1, 100 do cov[s] = reached[s] end
      print("coverage by block: " .. table.concat(cov, " "))
    end
    print(string.format("SELECTIVE: links whose peer scores >= relayThreshold: %d/%d before, %d/%d after",
      sumry.above_before, sumry.links, sumry.above_after, sumry.links))
    -- Measured: 1832..1899 of 1900 in eleven runs, never complete (misses
    -- spread over the run, most in the first blocks).
    if sumry.deliveries < sumry.expected then
      pending(string.format("SELECTIVE delivered %d of %d (links at relayThreshold: %d/%d before the "
        .. "blocks, %d/%d after). A fresh peer scores about 40 (uptime 20 + latency 20), below "
        .. "relayThreshold 50, so the first blocks go only to the 3-peer fallback; at the next "
        .. "score recompute (every second) the peers that delivered blocks to a node score 57..75 "
        .. "and it forwards only to them. A peer that sent it nothing stays at 40 and gets a block "
        .. "only when no eligible peer qualifies for that block (fallback), so cold links warm up "
        .. "slowly and the early blocks miss the nodes behind them (origins skip such neighbours "
        .. "too). Once warm, nearly every link qualifies (duplicates count as valid deliveries) and "
        .. "SELECTIVE forwards like FLOOD. See docs/TESTNET.md.", sumry.deliveries, sumry.expected,
        sumry.above_before, sumry.links, sumry.above_after, sumry.links))
    end
  end)

  it("VALIDATOR_ONLY: a consensus vote travels the validators and no one else", function()
    -- validators first, to learn their ids; then restarted with the set
    local vids, vdirs = {}, {}
    for v = 1, 3 do
      local n = H.start({ config = { logLevel = "warn" } })
      vids[v], vdirs[v] = id_of(n), n.dir
      n:stop()
    end
    -- V1 - V2 - V3 in a line; N4..N6 hang off V1, N7..N8 off V2, N9..N10 off V3
    local edges = { { 1, 2 }, { 2, 3 }, { 4, 1 }, { 5, 1 }, { 6, 1 }, { 7, 2 }, { 8, 2 }, { 9, 3 },
      { 10, 3 } }
    local ns = build(10, edges, { validators = vids, messageRelay = FLOOD }, {
      start = function(i)
        if i <= 3 then return { dir = vdirs[i], policies = vdirs[i] .. "/policies" } end
      end,
    })
    for v = 1, 3 do assert.equal(vids[v], id_of(ns[v])) end
    for i = 1, 10 do
      local m = stats(ns[i]).modes
      assert.equal("validator_only", m.consensus_vote, "node " .. i)
      assert.equal("flood", m.block, "node " .. i)
    end
    record(ns, "consensus_vote")
    -- from V1: only V2 among its 4 peers; V2 passes it to V3 only
    assert.equal(1, ns[1]:eval([[return network.broadcast_message({type = "consensus_vote",
      data = {height = 1, round = 0, vote = "prevote", seq = 1}})]]))
    assert.truthy(H.wait_for(function() return ngot(ns[3]) >= 1 end, 10))
    local st = settle(ns)
    local g2, g3 = got(ns[2]), got(ns[3])
    assert.equal(1, #g2)
    assert.equal(1, #g3)
    assert.equal(0, g2[1].hops)
    assert.equal(1, g3[1].hops)
    assert.equal(id_of(ns[2]), g3[1].from)
    assert.equal(1, st[2].relayed)
    assert.equal(1, st[3].dropped.no_target) -- its only validator peer is the sender
    for i = 4, 10 do
      assert.equal(0, ngot(ns[i]), "node " .. i)
      assert.equal(0, st[i].received, "node " .. i) -- never even sent to them
    end
    -- from a non-validator hanging off V2: to V2 only, then to V1 and V3
    assert.equal(1, ns[7]:eval([[return network.broadcast_message({type = "consensus_vote",
      data = {height = 1, round = 0, vote = "precommit", seq = 2}})]]))
    assert.truthy(H.wait_for(function() return ngot(ns[1]) >= 1 and ngot(ns[3]) >= 2 end, 10))
    st = settle(ns)
    assert.equal(1, ngot(ns[1]))
    assert.equal(2, ngot(ns[2]))
    assert.equal(2, ngot(ns[3]))
    assert.equal(3, st[2].relayed) -- 1 for the first vote, 2 for this one
    for i = 4, 10 do
      assert.equal(0, ngot(ns[i]), "node " .. i)
      assert.equal(0, st[i].received, "node " .. i)
    end
    assert.equal(0, sum(st, "duplicates"))
    -- a block from V1 (FLOOD) still reaches all nine others
    record(ns, "block")
    assert.equal(4, ns[1]:eval('return network.broadcast_message({type = "block", data = {seq = 3}})'))
    assert.truthy(H.wait_for(function()
      for i = 2, 10 do if ngot(ns[i]) < 1 then return false end end
      return true
    end, 10))
    settle(ns)
    for i = 2, 10 do assert.equal(1, ngot(ns[i]), "node " .. i) end
  end)

  it("path exclusion: never sent to a node on the path, even when it is a peer", function()
    -- O - Y; Y, Z, X in a triangle. Y relays blocks to its validators only
    -- (validators = {Z}), so Z passes the block to X with path {Y, Z}: X's
    -- only other peer, Y, is on the path, and X must not send it back.
    local O, Z, X, Y = 1, 2, 3, 4
    local ns = build(4, { { Y, O }, { Y, Z }, { Y, X }, { Z, X } }, function(i, nodes)
      if i == Y then
        return { validators = { id_of(nodes[Z]) }, messageRelay = { relayMode = "validator_only" } }
      end
      return { messageRelay = FLOOD }
    end)
    record(ns, "block")
    assert.equal(1, ns[O]:eval('return network.broadcast_message({type = "block", data = {seq = 1}})'))
    assert.truthy(H.wait_for(function() return ngot(ns[X]) >= 1 end, 10))
    local st = settle(ns)
    local gx = got(ns[X])
    assert.equal(1, #gx)
    assert.equal(2, gx[1].hops)
    assert.equal(id_of(ns[Z]), gx[1].from)
    assert.equal(1, st[Y].relayed) -- to Z only
    assert.equal(1, st[Z].relayed) -- to X only (Y is the sender)
    assert.equal(0, st[X].relayed)
    assert.equal(1, st[X].dropped.no_target)
    assert.equal(1, st[Y].received) -- from O; nothing came back
    assert.equal(0, sum(st, "duplicates"))
  end)

  it("no route: a direct message from a node without peers", function()
    local a = H.start({ config = { logLevel = "warn" } })
    local r = a:eval(string.format([[local id, err = relay.send_direct_relay_message(%q,
      {type = "block", data = {seq = 1}}) return id == nil, err]], string.rep("ab", 20)))
    assert.is_true(r[1])
    assert.matches("^no route", r[2])
  end)
end)

-- A line of 6, maxRelayHops = 3, shared by the hop limit and direct relay.
describe("relay flow on a line of 6 (maxRelayHops = 3)", function()
  local ns
  setup(function()
    local edges = {}
    for i = 1, 5 do edges[i] = { i + 1, i } end
    ns = build(6, edges, { messageRelay = { relayMode = "flood", maxRelayHops = 3 } })
    record(ns, "block")
    for _, n in ipairs(ns) do
      n:eval([[results = {} network.on("relay:result", function(id, status, target)
        results[#results + 1] = {id = id, status = status, target = target} end) return true]])
    end
  end)
  teardown(function() H.cleanup() end)

  local function snapshot()
    local s, g = {}, {}
    for i, n in ipairs(ns) do s[i], g[i] = stats(n), ngot(n) end
    return s, g
  end

  it("a broadcast from one end is delivered at hops 0..3 and stops at the hop limit", function()
    local s0, g0 = snapshot()
    assert.equal(1, ns[1]:eval('return network.broadcast_message({type = "block", data = {seq = 1}})'))
    assert.truthy(H.wait_for(function() return ngot(ns[5]) > g0[5] end, 10))
    local st = settle(ns)
    for i = 2, 5 do
      local g = got(ns[i])
      assert.equal(g0[i] + 1, #g, "node " .. i)
      assert.equal(i - 2, g[#g].hops, "node " .. i)
    end
    -- node 5 got it at hops 3 = maxRelayHops: delivered, not forwarded
    assert.equal(1, st[5].dropped.hops - s0[5].dropped.hops)
    assert.equal(0, st[5].relayed - s0[5].relayed)
    for i = 2, 4 do assert.equal(0, st[i].dropped.hops - s0[i].dropped.hops, "node " .. i) end
    assert.equal(g0[6], ngot(ns[6]))
    assert.equal(s0[6].received, st[6].received)
  end)

  it("a direct message across 3 hops is delivered once and receipted", function()
    local g0 = { ngot(ns[2]), ngot(ns[3]), ngot(ns[4]) }
    local d0 = stats(ns[1]).direct
    ns[1]:eval("results = {} return true")
    local target = id_of(ns[4])
    local mid = ns[1]:eval(string.format([[return relay.send_direct_relay_message(%q,
      {type = "block", data = {seq = 2, direct = true}})]], target))
    assert.matches("^%x+$", mid)
    assert.equal(64, #mid)
    local res = H.wait_for(function()
      local r = ns[1]:eval("return results")
      return #r > 0 and r
    end, 10)
    assert.truthy(res, "no relay:result")
    assert.same({ { id = mid, status = "delivered", target = target } }, res)
    settle(ns)
    local g = got(ns[4])
    assert.equal(g0[3] + 1, #g)
    assert.equal(mid, g[#g].id)
    assert.equal(2, g[#g].hops)
    assert.equal(id_of(ns[1]), g[#g].origin)
    -- the nodes on the way pass it on without delivering it
    assert.equal(g0[1], ngot(ns[2]))
    assert.equal(g0[2], ngot(ns[3]))
    assert.equal(d0.delivered + 1, stats(ns[1]).direct.delivered)
  end)

  it("a direct message beyond maxRelayHops times out and never arrives", function()
    local g6, s0, d0 = ngot(ns[6]), stats(ns[5]), stats(ns[1]).direct
    ns[1]:eval("results = {} return true")
    local target = id_of(ns[6])
    local mid = ns[1]:eval(string.format([[return relay.send_direct_relay_message(%q,
      {type = "block", data = {seq = 3, direct = true}})]], target))
    assert.equal(64, #mid)
    local res = H.wait_for(function()
      local r = ns[1]:eval("return results")
      return #r > 0 and r
    end, 10, 0.25)
    assert.truthy(res, "no relay:result")
    assert.same({ { id = mid, status = "timeout", target = target } }, res)
    assert.equal(g6, ngot(ns[6]))
    -- node 5 holds it at hops 3, one hop short of its target
    assert.equal(1, stats(ns[5]).dropped.hops - s0.dropped.hops)
    assert.equal(d0.failed + 1, stats(ns[1]).direct.failed)
  end)
end)
