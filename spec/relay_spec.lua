-- Unit: MessageRelay's C core — target choice per mode, path exclusion, the
-- duplicate filter and its expiry (through the bt2c module).
local bt2c = require "bt2c"

local function id(c) return string.rep(c, 20) end

describe("relay target choice", function()
  -- the issue's three peers: a validator scoring 80, a non-validator scoring
  -- 60 and one scoring 40; relayThreshold 50
  local V, N60, N40 = id("V"), id("6"), id("4")
  local function peers(extra)
    local c = {
      { id = V, score = 80, validator = true },
      { id = N60, score = 60 },
      { id = N40, score = 40 },
    }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end
  local function choose(mode, opts)
    opts = opts or {}
    local list = bt2c.relay_select({ mode = mode, threshold = 50, trusted = 75, neutral = 0,
      origin = opts.origin or id("O"), path = opts.path, candidates = opts.candidates or peers() })
    local ids = {}
    for i, k in ipairs(list) do ids[i] = (opts.candidates or peers())[k].id end
    return ids
  end

  it("FLOOD sends to every peer not on the path", function()
    assert.same({ V, N60, N40 }, choose("flood"))
    assert.same({ N60, N40 }, choose("flood", { path = { V } }))
    assert.same({ N40 }, choose("flood", { path = { V }, origin = N60 }))
  end)

  it("SELECTIVE sends only to peers at the threshold, trusted first", function()
    assert.same({ V, N60 }, choose("selective"))
    assert.same({ N60 }, choose("selective", { path = { V } }))
  end)

  it("SELECTIVE falls back to the best few not below neutral when nobody qualifies", function()
    local c = { { id = id("a"), score = 10 }, { id = id("b"), score = 40 }, { id = id("c"), score = -5 },
      { id = id("d"), score = 30 }, { id = id("e"), score = 20 } }
    -- three of the four not below neutral, at random; never the negative one
    local seen = {}
    for _ = 1, 50 do
      local got = choose("selective", { candidates = c })
      assert.equal(3, #got)
      for _, x in ipairs(got) do
        assert.are_not.equal(id("c"), x)
        seen[x] = true
      end
    end
    assert.truthy(seen[id("a")] and seen[id("b")] and seen[id("d")] and seen[id("e")],
      "every eligible peer gets its turn")
  end)

  it("SELECTIVE sends to at most fanout qualifying peers, trusted first, picked at random", function()
    local c = {}
    for i = 1, 6 do c[i] = { id = id(string.char(64 + i)), score = 50 + i * 5 } end -- 55..80
    local picked = {}
    for _ = 1, 60 do
      local list = bt2c.relay_select({ mode = "selective", threshold = 50, trusted = 75,
        neutral = 0, fanout = 3, origin = id("O"), candidates = c })
      assert.equal(3, #list)
      -- the trusted ones (75, 80) always come first
      local firsts = { list[1], list[2] }
      table.sort(firsts)
      assert.same({ 5, 6 }, firsts)
      picked[list[3]] = true
    end
    for i = 1, 4 do assert.truthy(picked[i], "peer " .. i .. " was never picked") end
  end)

  it("VALIDATOR_ONLY sends only to validators", function()
    assert.same({ V }, choose("validator_only"))
    assert.same({}, choose("validator_only", { path = { V } }))
  end)

  it("never sends back to the peer it came from", function()
    local c = peers()
    c[2].from = true
    assert.same({ V, N40 }, choose("flood", { candidates = c }))
  end)
end)

describe("duplicate filter", function()
  local function mid(n) return string.pack(">I4", n) .. string.rep("\0", 28) end

  it("detects a duplicate and forgets it exactly at messageExpiration", function()
    local s = bt2c.seen_new(1024, 3600)
    assert.is_false(s:check(mid(1), 1000))
    assert.is_true(s:check(mid(1), 1000 + 3599.999))
    assert.is_true(s:contains(mid(1), 4599.999))
    assert.is_false(s:contains(mid(1), 4600)) -- exactly at expiry, swept or not
    assert.is_false(s:check(mid(1), 4600))   -- new again: remembered anew
    assert.is_true(s:check(mid(1), 4601))
  end)

  it("inserts in one probe and hands back the new entry, not a live duplicate", function()
    local s = bt2c.seen_new(1024, 10)
    assert.equal(7, s:insert(mid(1), 100, 7))
    assert.is_nil(s:insert(mid(1), 109.999, 8))
    assert.is_true(s:check(mid(1), 109.999))
    assert.equal(9, s:insert(mid(1), 110, 9)) -- expired, not swept: new again
    assert.equal(1, (s:count()))
  end)

  it("sweeps the oldest first and only what expired", function()
    local s = bt2c.seen_new(1024, 10)
    for i = 1, 100 do s:check(mid(i), i) end
    assert.equal(100, (s:count()))
    assert.equal(50, s:sweep(60))  -- entries 1..50 (seen at <= 50) expire at <= 60
    assert.equal(50, (s:count()))
    assert.is_false(s:contains(mid(50), 60))
    assert.is_true(s:contains(mid(51), 60))
  end)

  it("stays within its bound, dropping the oldest one at a time", function()
    local s = bt2c.seen_new(1024, 3600)
    for i = 1, 5000 do s:check(mid(i), 1) end
    local count, early = s:count()
    assert.equal(1024, count)
    assert.equal(5000 - 1024, early)
    assert.is_false(s:contains(mid(5000 - 1024), 1))
    assert.is_true(s:contains(mid(5000 - 1023), 1))
    assert.is_true(s:contains(mid(5000), 1))
  end)
end)
