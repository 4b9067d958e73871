-- Functional: PeerScoring in a live node — thresholds that act, decay,
-- bans that hold, and the console API.
local H = require "helpers.node"
local sys = H.sys

local X = string.rep("ab", 20) -- a node id nobody is connected as

local url, id_of = H.url, H.id_of

local function total(node, id)
  return node:eval(string.format("return scoring.get_score(%q).total_score", id))
end

describe("scoring", function()
  after_each(function() H.cleanup() end)

  it("fires thresholds on crossings in both directions and acts on them", function()
    local a = H.start({ config = { peerScoring = { thresholds = { trusted = 25, neutral = 0,
      banned = -50 } } } })
    -- latency 10 ms: latency category 10 -> 10 x 0.2 x 10 = 20 points
    assert.near(20, a:eval(string.format("return scoring.update_latency(%q, 10)", X)), 1e-3)
    assert.equal("neutral", a:eval(string.format("return scoring.get_score(%q).level", X)))
    -- three good blocks: 6 behaviour points -> 26, trusted
    for _ = 1, 3 do a:eval(string.format('return scoring.record_behavior(%q, "GOOD_BLOCK")', X)) end
    assert.near(26, total(a, X), 1e-3)
    assert.truthy(a:wait_log("event=score_level peer=" .. X .. " from=neutral to=trusted", 3))
    -- invalid messages: -3 each; down through neutral to below neutral ...
    for _ = 1, 3 do a:eval(string.format('return scoring.record_behavior(%q, "INVALID_MESSAGE")', X)) end
    assert.near(17, total(a, X), 1e-3)
    assert.truthy(a:log():find("from=trusted to=neutral", 1, true))
    for _ = 1, 6 do a:eval(string.format('return scoring.record_behavior(%q, "INVALID_MESSAGE")', X)) end
    assert.near(-1, total(a, X), 1e-3)
    assert.truthy(a:log():find("from=neutral to=below_neutral", 1, true))
    -- ... and to banned, which bans for ban_seconds (12 h by default)
    for _ = 1, 17 do a:eval(string.format('return scoring.record_behavior(%q, "INVALID_MESSAGE")', X)) end
    local s = a:eval(string.format("return scoring.get_score(%q)", X))
    assert.near(-52, s.total_score, 1e-3)
    assert.equal("banned", s.level)
    assert.truthy(s.banned_for > 43190 and s.banned_for <= 43200)
    assert.truthy(a:log():find("from=below_neutral to=banned", 1, true))
    assert.truthy(a:log():find("event=peer_banned peer=" .. X, 1, true))
    -- get_score explains itself
    assert.equal("INVALID_MESSAGE", s.history[1].behavior)
    assert.equal(-3, s.history[1].delta)
    assert.equal("behavior", s.factors[1].category)
    assert.near(-72, s.factors[1].contribution, 1e-3)
    assert.equal(29, #s.history)
  end)

  it("decays behaviour toward neutral over decayPeriod", function()
    local a = H.start({ config = { peerScoring = { decayPeriod = 1000, decayFactor = 0.5 } } })
    -- five invalid messages at once: -15 points, then halving every second
    a:eval(string.format('for _ = 1, 5 do scoring.record_behavior(%q, "INVALID_MESSAGE") end', X))
    local t0, at0 = total(a, X), sys.now()
    assert.is_true(t0 < -12 and t0 >= -15, "total " .. t0)
    sys.sleep(2)
    local t1, at1 = total(a, X), sys.now()
    local dt = at1 - at0
    -- t1 = t0 * 0.5^dt, give or take the time the console calls took
    local lo, hi = t0 * 0.5 ^ (dt - 0.3), t0 * 0.5 ^ (dt + 0.3)
    assert.is_true(t1 >= lo and t1 <= hi, string.format("t0 %.3f t1 %.3f dt %.2f", t0, t1, dt))
    assert.is_true(t1 > t0 and t1 < 0)
  end)

  it("refuses unknown behaviours and malformed ids with clear errors", function()
    local a = H.start()
    local code, _, err = a:console(string.format('scoring.record_behavior(%q, "GOOD_BLOK")', X))
    assert.equal(1, code)
    assert.matches("unknown behavior 'GOOD_BLOK'", err, 1, true)
    code, _, err = a:console('scoring.record_behavior("nope", "SPAM")')
    assert.equal(1, code)
    assert.matches("a node id is 40 lowercase hex characters", err, 1, true)
    assert.equal(0, (a:console("assert(scoring.get_score(string.rep('c', 40)) == nil)")))
  end)

  it("ranks peers with get_top_peers, best first", function()
    local a = H.start()
    local ids = { string.rep("01", 20), string.rep("02", 20), string.rep("03", 20) }
    a:eval(string.format('scoring.update_latency(%q, 20) scoring.record_behavior(%q, "GOOD_BLOCK")',
      ids[1], ids[1]))
    a:eval(string.format("scoring.update_latency(%q, 150)", ids[2]))
    a:eval(string.format('scoring.record_behavior(%q, "SPAM")', ids[3]))
    local top = a:eval("return scoring.get_top_peers(3)")
    assert.same({ ids[1], ids[2], ids[3] }, { top[1].peer_id, top[2].peer_id, top[3].peer_id })
    assert.near(22, top[1].total_score, 1e-3)
    assert.near(10, top[2].total_score, 1e-3)
    assert.near(-10, top[3].total_score, 1e-3)
    assert.equal(1, #a:eval("return scoring.get_top_peers(1)"))
  end)

  it("bans and unbans a connected peer from the console; the ban holds across restarts", function()
    local a = H.start()
    local b = H.start({ config = { persistentPeers = { url(a) } } })
    assert.truthy(H.wait_for(function() return #a:eval("return network.get_peers()") == 1 end, 10))
    assert.is_true(a:eval(string.format("return scoring.ban(%q, 3600)", id_of(b))))
    assert.truthy(b:wait_log("code=4010", 5))
    -- b keeps redialling (persistent) and is refused every time
    assert.truthy(a:wait_log("code=4010 why=banned", 10))
    assert.equal(0, #a:eval("return network.get_peers()"))
    -- a restart of a does not forget the ban
    local a_dir, a_port = a.dir, a.port
    a:stop()
    local a2 = H.start({ dir = a_dir, policies = a_dir .. "/policies", config = { port = a_port } })
    local refused = a2:count_log("code=4010")
    assert.truthy(H.wait_for(function() return a2:count_log("code=4010") > refused end, 15))
    assert.equal(0, #a2:eval("return network.get_peers()"))
    assert.truthy(a2:eval(string.format("return scoring.get_score(%q).banned_for", id_of(b))) > 3500)
    -- unban: b gets back in (dialling now rather than after its backoff)
    assert.is_true(a2:eval(string.format("return scoring.unban(%q)", id_of(b))))
    -- an operator ban is not a score: b is as well regarded as before
    assert.equal("neutral", a2:eval(string.format("return scoring.get_score(%q).level", id_of(b))))
    b:eval(string.format("return network.connect(%q)", url(a2)))
    assert.truthy(H.wait_for(function() return #a2:eval("return network.get_peers()") == 1 end, 10))
  end)
end)
