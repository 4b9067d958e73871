-- Functional: the integration layer across real bt2cd processes — chain
-- sync (a fresh node catches up with a 5-node network holding 1,000 blocks;
-- a peer serving corrupt blocks is scored down and avoided, one that does
-- not answer is timed out; a block from the future starts a sync), and
-- consensus (votes from validators reach every validator of a 10-node
-- network under VALIDATOR_ONLY; a node outside the validator set cannot
-- pass itself off as one; validator sets need a 2/3 quorum of the current
-- set).
--
-- Each describe block builds one network in lazy_setup and its tests run in
-- order on it; topologies are forced as in relay_flow_spec (every node's
-- connection limits are the connections it dials and accepts, plus spare
-- inbound and outbound slots for the newcomers of the sync tests).
local H = require "helpers.node"

local url, id_of, peer_ids = H.url, H.id_of, H.peer_ids

-- Starts n nodes (opts.dirs[i]: reuse a data directory) and connects them
-- as `edges` says ({a, b}: a dials b); waits until every node has exactly
-- its intended neighbours. Returns the nodes.
local function build(n, edges, config, opts)
  opts = opts or {}
  local outd, ind, nbrs = {}, {}, {}
  for i = 1, n do outd[i], ind[i], nbrs[i] = 0, 0, {} end
  for _, e in ipairs(edges) do
    outd[e[1]], ind[e[2]] = outd[e[1]] + 1, ind[e[2]] + 1
    nbrs[e[1]][e[2]], nbrs[e[2]][e[1]] = true, true
  end
  local nodes = {}
  for i = 1, n do
    local c = { logLevel = os.getenv("IT_LOG") or "info", maxOutbound = outd[i] + (opts.spare or 0),
      maxInbound = ind[i] + (opts.spare or 0), maxPeers = outd[i] + ind[i] + 2 * (opts.spare or 0),
      peerDiscoveryInterval = 3600000 }
    for k, v in pairs(config or {}) do c[k] = v end
    local dir = opts.dirs and opts.dirs[i]
    nodes[i] = H.start({ config = c, dir = dir, policies = dir and dir .. "/policies" })
  end
  for _, e in ipairs(edges) do
    assert.is_true(nodes[e[1]]:eval(string.format("return network.connect(%q)", url(nodes[e[2]]))))
  end
  local index = {}
  for i = 1, n do index[id_of(nodes[i])] = i end
  local wrong
  assert(H.wait_for(function()
    for i = 1, n do
      local have, count = {}, 0
      for _, pid in ipairs(peer_ids(nodes[i])) do have[index[pid] or pid], count = true, count + 1 end
      local want = 0
      for j in pairs(nbrs[i]) do
        want = want + 1
        if not have[j] then wrong = "node " .. i .. " lacks " .. j return false end
      end
      if count ~= want then wrong = "node " .. i .. " has " .. count .. " peers" return false end
    end
    return true
  end, 30, 0.2), "topology did not form: " .. tostring(wrong))
  return nodes
end

local function tip(node) return node:eval("return blockchain.get_tip()") end

-- Runs `return <call>` for a call with two results (value, err): returns
-- them as a table {ok =, err =} (JSON cannot carry a leading nil).
local function call2(node, call)
  return node:eval("local a, b = " .. call .. " return {ok = a or false, err = b or false}")
end

-- All block hashes 1..h of a node, joined: two chains are the same if equal.
local function hashes(node, h)
  return node:eval(string.format([[local t = {}
    for i = 1, %d do t[i] = blockchain.get_block(i).hash end
    return table.concat(t, ",")]], h))
end

local function wait_tip(node, want, timeout)
  return H.wait_for(function()
    local t = tip(node)
    return t.height == want.height and t.hash == want.hash
  end, timeout or 30, 0.2)
end

local function status(node) return node:eval("return blockchain.sync_status()") end

describe("chain sync", function()
  local ns, want, all
  local FLOOD = { relayMode = "flood" }

  lazy_setup(function()
    -- five nodes in a full mesh; node 1 makes 1,000 blocks, which reach the
    -- others by gossip (and sync, for any the relay dropped)
    local edges = {}
    for a = 1, 5 do for b = a + 1, 5 do edges[#edges + 1] = { a, b } end end
    ns = build(5, edges, { messageRelay = FLOOD }, { spare = 2 })
    assert.equal(1000, ns[1]:eval([[
      for i = 1, 1000 do assert(blockchain.append({n = i})) end
      return blockchain.get_height()]]))
    want = tip(ns[1])
    for i = 2, 5 do assert.truthy(wait_tip(ns[i], want), "node " .. i .. " did not get 1,000 blocks") end
    all = hashes(ns[1], 1000)
    for i = 2, 5 do assert.equal(all, hashes(ns[i], 1000), "node " .. i) end
  end)

  lazy_teardown(function() H.cleanup() end)

  it("a fresh node joins and reaches the same tip, asking several peers", function()
    local f = H.start({ config = { messageRelay = FLOOD, peerDiscoveryInterval = 3600000 } })
    assert.equal(0, f:eval("return blockchain.get_height()"))
    local cmds = {}
    for i = 1, 5 do cmds[i] = string.format("network.connect(%q)", url(ns[i])) end
    f:eval(table.concat(cmds, " ") .. " return true")
    assert.truthy(wait_tip(f, want, 30), "the fresh node did not catch up")
    assert.equal(all, hashes(f, 1000))
    local st = status(f)
    assert.is_false(st.syncing)
    assert.equal(1000, st.blocks_applied)
    assert.is_true(st.requests_sent >= 10) -- batches of at most 100
    assert.equal(0, st.bad_responses)
    assert.is_truthy(f:wait_log("event=sync_completed height=1000", 5))
    local serving = 0
    for i = 1, 5 do
      if status(ns[i]).served_blocks > 0 then serving = serving + 1 end
    end
    assert.is_true(serving >= 2, "one peer served everything")
    -- the peers' heights came with their handshakes
    local peers = f:eval("return network.get_peers()")
    assert.is_true(#peers >= 5)
    for _, p in ipairs(peers) do assert.equal(1000, p.height) end
    f:stop()
  end)

  it("a peer serving corrupt blocks is scored down and the sync completes from the others", function()
    local liar = ns[5]
    assert.is_true(liar:eval("return blockchain._corrupt_responses(true)"))
    -- one outbound slot, for the liar: g cannot dial the others it hears
    -- of, so the liar is asked (and caught) first for sure; then the honest
    -- nodes dial g
    local g = H.start({ config = { messageRelay = FLOOD, peerDiscoveryInterval = 3600000,
      maxOutbound = 1, maxInbound = 8, maxPeers = 9 } })
    assert.is_true(g:eval(string.format("return network.connect(%q)", url(liar))))
    assert.truthy(H.wait_for(function() return status(g).bad_responses >= 1 end, 15),
      "the corrupt response was not detected")
    assert.equal(0, g:eval("return blockchain.get_height()")) -- nothing of it stored
    for i = 1, 4 do assert.is_true(ns[i]:eval(string.format("return network.connect(%q)", url(g)))) end
    assert.truthy(wait_tip(g, want, 30), "the sync did not complete from the honest peers")
    assert.equal(all, hashes(g, 1000))
    assert.truthy(g:log():find("event=sync_bad_response peer=" .. id_of(liar), 1, true))
    local bad = g:eval(string.format("return scoring.get_score(%q)", id_of(liar)))
    local good = g:eval(string.format("return scoring.get_score(%q)", id_of(ns[1])))
    assert.is_true(bad.metrics.blocks_invalid >= 1)
    assert.is_true(bad.metrics.behavior < 0)
    assert.is_true(bad.total_score < good.total_score,
      ("liar %.1f, honest %.1f"):format(bad.total_score, good.total_score))
    assert.is_true(status(liar).served_blocks > 0)
    assert.is_true(liar:eval("return blockchain._corrupt_responses(false)"))
    g:stop()
  end)

  it("a peer that does not answer is timed out and rested, and the others finish the sync", function()
    local slow = ns[4]
    assert.is_true(slow:eval("return blockchain._silent_responses(true)"))
    local s = H.start({ config = { messageRelay = FLOOD, peerDiscoveryInterval = 3600000,
      maxOutbound = 1, maxInbound = 8, maxPeers = 9 } })
    assert.is_true(s:eval(string.format("return network.connect(%q)", url(slow))))
    assert.truthy(H.wait_for(function() return status(s).timeouts >= 1 end, 15), "no timeout")
    assert.equal(0, s:eval("return blockchain.get_height()"))
    assert.equal(0, status(s).peers) -- the only peer is resting
    for i = 1, 3 do assert.is_true(ns[i]:eval(string.format("return network.connect(%q)", url(s)))) end
    assert.truthy(wait_tip(s, want, 30), "the sync did not complete from the others")
    assert.equal(all, hashes(s, 1000))
    assert.truthy(s:log():find("event=sync_timeout peer=" .. id_of(slow), 1, true))
    local sc = s:eval(string.format("return scoring.get_score(%q)", id_of(slow)))
    assert.equal("TIMEOUT", sc.history[1].behavior)
    assert.is_true(sc.metrics.behavior < 0)
    assert.is_true(slow:eval("return blockchain._silent_responses(false)"))
    s:stop()
  end)

  it("a block from the future starts a sync instead of being refused", function()
    -- q knows r only as a peer at height 0; r then syncs from the network
    -- and relays block 1001 to q: q learns r's height from that block
    -- q takes one connection (r's); nobody dials r: neither can hear of
    -- the network's height any other way
    local q = H.start({ config = { messageRelay = FLOOD, maxInbound = 1, maxOutbound = 0, maxPeers = 1 } })
    local r = H.start({ config = { messageRelay = FLOOD, maxInbound = 0, maxOutbound = 2, maxPeers = 2 } })
    assert.is_true(r:eval(string.format("return network.connect(%q)", url(q))))
    assert.truthy(H.wait_for(function() return #peer_ids(q) == 1 end, 10))
    assert.equal(0, q:eval("return network.get_peers()[1].height"))
    assert.is_true(r:eval(string.format("return network.connect(%q)", url(ns[2]))))
    assert.truthy(wait_tip(r, want, 30))
    assert.equal(0, q:eval("return blockchain.get_height()"))
    local b = ns[1]:eval("return blockchain.append({n = 1001})")
    assert.equal(1001, b.height)
    assert.truthy(wait_tip(q, { height = 1001, hash = b.hash }, 30), "q did not sync to 1001")
    assert.is_truthy(q:wait_log("event=sync_started height=0", 1))
    assert.is_nil(q:log():find("event=message_rejected", 1, true))
    want = b
  end)
end)

describe("consensus", function()
  local ns, vids, pubs
  local V = 4

  lazy_setup(function()
    -- validators first, to learn their ids; then restarted with the set
    vids, pubs = {}, {}
    local dirs = {}
    for v = 1, V do
      local n = H.start({ config = { logLevel = "warn" } })
      vids[v], dirs[v] = id_of(n), n.dir
      pubs[v] = n:eval("return consensus.sign_vote({height = 0, vote = 'x'}).publicKey")
      n:stop()
    end
    -- V1 - V2 - V3 - V4 in a line; the others hang off them:
    -- N5, N6 off V1; N7 off V2; N8 off V3; N9, N10 off V4
    local edges = { { 1, 2 }, { 2, 3 }, { 3, 4 }, { 5, 1 }, { 6, 1 }, { 7, 2 }, { 8, 3 }, { 9, 4 },
      { 10, 4 } }
    ns = build(10, edges, { validators = vids }, { dirs = dirs })
    for v = 1, V do assert.equal(vids[v], id_of(ns[v])) end
    for i = 1, 10 do
      local mode = ns[i]:eval("return relay.get_stats().modes.consensus_vote")
      assert.equal("validator_only", mode, "node " .. i)
      assert.truthy(ns[i]:eval([[
        got = {}
        return integration.set_consensus_engine({
          on_vote = function(v, from) got[#got + 1] = {validator = v.validator, height = v.height,
            vote = v.vote, from = from} end})]]))
    end
  end)

  lazy_teardown(function() H.cleanup() end)

  local function got(node) return node:eval("return got") end

  it("votes from each validator reach every validator, and only them", function()
    for v = 1, V do
      local r = call2(ns[v], string.format(
        "consensus.send_vote({height = 7, round = 0, blockHash = %q, vote = 'prevote'})",
        string.rep("0", 63) .. v))
      assert.is_true(r.ok >= 1, "validator " .. v)
      assert.equal(vids[v], r.err.validator) -- the vote sent
    end
    assert.truthy(H.wait_for(function()
      for v = 1, V do if #got(ns[v]) < V - 1 then return false end end
      return true
    end, 15), "not every validator got every vote")
    H.sys.sleep(0.5)
    for v = 1, V do
      local from = {}
      for _, x in ipairs(got(ns[v])) do
        assert.is_nil(from[x.validator], "validator " .. v .. " got a vote twice")
        from[x.validator] = true
        assert.equal(7, x.height)
      end
      for w = 1, V do assert.equal(w ~= v or nil, from[vids[w]], ("V%d from V%d"):format(v, w)) end
      assert.equal(V - 1, ns[v]:eval("return integration.metrics()['consensus.votes_accepted']"))
    end
    for i = V + 1, 10 do
      assert.same({}, got(ns[i]), "node " .. i)
      assert.equal(0, ns[i]:eval("return relay.get_stats().byType.consensus_vote == nil and 0 or "
        .. "relay.get_stats().byType.consensus_vote.received"), "node " .. i)
    end
  end)

  it("a node outside the validator set cannot pass itself off as one", function()
    local forger, victim = ns[7], ns[2] -- N7 hangs off V2
    local r = call2(forger, "consensus.send_vote({height = 8, vote = 'prevote'})")
    assert.is_false(r.ok)
    assert.matches("is not in the validator set", r.err)
    local before = #got(victim)
    local forged = {
      -- V1's id, its own key and signature
      string.format("local v = consensus.sign_vote({height = 8, vote = 'prevote'}) v.validator = %q "
        .. "return network.broadcast_message({type = 'consensus_vote', data = v})", vids[1]),
      -- V1's id and public key, a signature it cannot make
      string.format("local v = consensus.sign_vote({height = 8, vote = 'precommit'}) v.validator = %q "
        .. "v.publicKey = %q return network.broadcast_message({type = 'consensus_vote', data = v})",
        vids[1], pubs[1]),
      -- its own id and key, validly signed, but not a validator
      "return network.broadcast_message({type = 'consensus_vote', "
        .. "data = consensus.sign_vote({height = 8, round = 1, vote = 'prevote'})})",
    }
    for _, chunk in ipairs(forged) do assert.is_true(forger:eval(chunk) >= 1) end
    local log = victim:wait_log("verdict=not_validator", 10)
    assert.truthy(log, "the forged votes were not rejected")
    for _, verdict in ipairs({ "bad_key", "bad_signature", "not_validator" }) do
      local line = log:match("[^\n]*event=consensus_rejected[^\n]*verdict=" .. verdict .. "[^\n]*")
      assert.truthy(line, verdict)
      assert.matches("penalised=yes", line)
      assert.matches("peer=" .. id_of(forger), line, 1, true)
    end
    H.sys.sleep(0.3)
    assert.equal(before, #got(victim)) -- the engine never saw them
    for v = 1, V do
      for _, x in ipairs(got(ns[v])) do
        assert.is_true(x.height ~= 8, "V" .. v .. " accepted a forged vote")
      end
    end
    assert.equal(3, victim:eval("return integration.metrics()['consensus.votes_rejected']"))
    local s = victim:eval(string.format("return scoring.get_score(%q)", id_of(forger)))
    assert.is_true(s.metrics.behavior <= -8.5, "INVALID_MESSAGE three times: " .. s.metrics.behavior)
    -- validators further on reject the forwarded copies without blaming the relayer
    local v2_on_v1 = ns[1]:eval(string.format("return scoring.get_score(%q)", vids[2]))
    assert.is_true(v2_on_v1.metrics.behavior >= 0)
  end)

  it("a validator set is adopted only with more than 2/3 of the current set", function()
    -- the new set: V1, V2, V3 (V4 leaves), epoch 1
    local entries = {}
    for v = 1, 3 do entries[v] = { nodeId = vids[v], publicKey = pubs[v], power = 1 } end
    table.sort(entries, function(a, b) return a.nodeId < b.nodeId end)
    local set = { epoch = 1, validators = entries }
    local sigs = {}
    for v = 1, 3 do
      sigs[v] = ns[v]:eval("return validators.sign(" .. H.lua_literal(set) .. ")")
    end
    local two = { epoch = 1, validators = entries, signatures = { sigs[1], sigs[2] } }
    local r = call2(ns[1], "validators.submit(" .. H.lua_literal(two) .. ")")
    assert.is_false(r.ok)
    assert.matches("no_quorum: signed by 2 of the 4 current validators", r.err)
    -- a non-validator's signature does not count either
    two.signatures[3] = ns[7]:eval("return validators.sign(" .. H.lua_literal(set) .. ")")
    assert.is_false(call2(ns[1], "validators.submit(" .. H.lua_literal(two) .. ")").ok)
    local three = { epoch = 1, validators = entries, signatures = sigs }
    assert.is_true(ns[1]:eval("return validators.submit(" .. H.lua_literal(three) .. ")"))
    for v = 1, 3 do
      assert.truthy(H.wait_for(function()
        return ns[v]:eval("return validators.get().epoch") == 1
      end, 10), "V" .. v .. " did not adopt the set")
      assert.is_false(ns[v]:eval(string.format("return validators.is_validator(%q)", vids[4])))
    end
    -- an old epoch is not taken back
    r = call2(ns[2], "validators.submit(" .. H.lua_literal(three) .. ")")
    assert.is_false(r.ok)
    assert.matches("^stale", r.err)
  end)
end)
