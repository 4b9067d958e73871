-- Unit: the peer store (src/peerstore*.c) through the bt2c test module. Real
-- sqlite files in a temp directory; kill -9 is a real child process.
local sys = require "bt2c"

local tmp -- per-test directory

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function make_tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -m 700 " .. sh_quote(p)))
  return p
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function id(n)
  return string.format("%040x", n)
end

local function sql(path, query)
  return assert(sys.peerstore_sql(path, query))
end

local function disk_count(path)
  return tonumber(sql(path, "SELECT count(*) AS n FROM nodes")[1].n)
end

local function open(path, max)
  return assert(sys.peerstore_open(path, max or 0))
end

local function ids_of(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = r.node_id end
  return out
end

local function sorted_ids(list)
  local out = ids_of(list)
  table.sort(out)
  return out
end

local function wait_for(pred, timeout)
  local deadline = sys.now() + (timeout or 10)
  while sys.now() < deadline do
    if pred() then return true end
    sys.sleep(0.02)
  end
  return pred()
end

local function lua54()
  local p = io.popen("command -v lua5.4")
  local path = p:read("l")
  p:close()
  return assert(path, "lua5.4 not found in PATH")
end

describe("peerstore", function()
  local db
  before_each(function()
    tmp = make_tmpdir()
    db = tmp .. "/peers.sqlite"
  end)
  after_each(function()
    collectgarbage() -- closes stores a failed test left open
    if tmp and tmp:match("^/tmp/") then os.execute("rm -rf " .. sh_quote(tmp)) end
  end)

  it("creates a WAL database with a versioned schema on first open", function()
    local ps = open(db)
    assert.equal(0, ps:count())
    ps:close()
    assert.equal("wal", sql(db, "PRAGMA journal_mode")[1].journal_mode)
    assert.equal("2", sql(db, "PRAGMA user_version")[1].user_version)
    assert.equal(tostring(0x62743263), sql(db, "PRAGMA application_id")[1].application_id)
    local names = {}
    for _, row in ipairs(sql(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")) do
      names[#names + 1] = row.name
    end
    assert.same({ "address_bans", "nodes" }, names)
    -- reopening an existing store neither fails nor recreates it
    ps = open(db)
    assert.equal(0, ps:count())
    ps:close()
  end)

  it("round-trips every field through flush, close and reopen", function()
    local full = {
      node_id = id(0xabc),
      pubkey = "\0\1\2\3" .. string.rep("\255", 24) .. "\0\0\0\7",
      addrs = { "ws://[2001:db8::1]:9000", "wss://node.example:443", "ws://10.0.0.1:1", "ws://b:2" },
      first_seen = 1700000000.25,
      last_seen = 1700000123.5,
      last_connected = 1700000100.125,
      failures = 7,
      source = "exchange",
      is_validator = true,
      score = -12.375,
      ban_until = 1800000000.5,
      anchor = true,
      -- opaque to the store: quotes, a backslash, spaces, UTF-8 all come back as given
      score_state = [[{"v":1,"app":[-3.5,2.25],"note":"it's a \"b\" \\ c","é":true}]],
    }
    local minimal = {
      node_id = id(1), addrs = {}, first_seen = 0, last_seen = 0, last_connected = 0,
      failures = 0, source = "", is_validator = false, score = 0, ban_until = 0, anchor = false,
      score_state = "",
    }
    local longest = { node_id = id(2), score_state = string.rep("x", 511) }
    local ps = open(db)
    assert.is_true(ps:put(full))
    assert.is_true(ps:put(minimal))
    assert.is_true(ps:put(longest))
    assert.same(full, ps:get(full.node_id)) -- reads come from memory
    assert.is_true(ps:flush())
    ps:close()

    ps = open(db)
    assert.equal(3, ps:count())
    assert.same(full, ps:get(full.node_id))
    assert.same(minimal, ps:get(minimal.node_id))
    assert.equal(longest.score_state, ps:get(longest.node_id).score_state)
    assert.is_nil(ps:get(id(3)))
    -- each() and best() carry the state too
    for _, r in ipairs(ps:each()) do assert.same(ps:get(r.node_id), r) end
    assert.same({ full }, ps:best(10, full.ban_until))
    ps:close()
    -- the addresses are one compact text column, the state is stored as given
    local row = sql(db, "SELECT addrs, score_state FROM nodes WHERE node_id = '" .. full.node_id .. "'")[1]
    assert.equal(table.concat(full.addrs, " "), row.addrs)
    assert.equal(full.score_state, row.score_state)
  end)

  it("keeps puts in memory until a flush writes them all in one transaction", function()
    local ps = open(db)
    for i = 1, 500 do
      local addr = "ws://10.0.0." .. (i % 250) .. ":9000"
      assert.is_true(ps:put { node_id = id(i), addrs = { addr }, score = i })
    end
    assert.equal(500, ps:count())
    assert.equal(0, disk_count(db)) -- nothing on disk yet
    local other = open(db)           -- a second store on the same file sees nothing either
    assert.equal(0, other:count())
    other:close()

    local before = ps:stats()
    assert.is_true(ps:flush())
    local after = ps:stats()
    assert.equal(1, after.commits - before.commits)
    assert.equal(500, after.rows_written - before.rows_written)
    assert.equal(500, disk_count(db))

    -- a flush with nothing dirty does not touch the disk
    assert.is_true(ps:flush())
    assert.equal(after.commits, ps:stats().commits)

    -- updates, forgets and bans together are still one commit
    ps:put { node_id = id(1), addrs = { "ws://10.9.9.9:1" }, score = 1000 }
    ps:forget(id(2))
    ps:ban_address("10.1.1.1", os.time() + 3600)
    assert.is_true(ps:flush())
    assert.equal(after.commits + 1, ps:stats().commits)
    ps:close()

    other = open(db)
    assert.equal(499, other:count())
    assert.equal(1000, other:get(id(1)).score)
    assert.is_nil(other:get(id(2)))
    assert.is_true(other:address_banned("10.1.1.1", os.time()) > 0)
    other:close()
  end)

  it("logs a failed flush, keeps the records dirty and retries at the next flush", function()
    local ps = open(db)
    for i = 1, 20 do ps:put { node_id = id(i), addrs = { "ws://h:" .. i } } end
    local lock = sys.peerstore_lock(db) -- another writer holds the database
    local ok, err = ps:flush()
    assert.is_nil(ok)
    assert.is_string(err)
    assert.equal(1, ps:stats().flush_failures)
    assert.equal(20, ps:count())
    lock:unlock()
    assert.equal(0, disk_count(db))
    assert.is_true(ps:flush())
    assert.equal(20, disk_count(db))
    ps:close()
  end)

  describe("bound", function()
    it("drops the least useful records first, never anchors or active bans", function()
      local now = os.time()
      local day = 86400
      local recs = {
        { node_id = id(1), addrs = { "ws://a:1" }, anchor = true, failures = 50, last_seen = now - 90 * day },
        { node_id = id(2), addrs = { "ws://a:2" }, ban_until = now + 3600, failures = 50,
          last_seen = now - 90 * day },
        -- hopeless: many failures, never connected -> dropped first
        { node_id = id(3), addrs = { "ws://a:3" }, failures = 12, last_seen = now, score = 50 },
        -- hopeless: no sign of life for 60 days (though once connected) -> dropped second
        { node_id = id(4), addrs = { "ws://a:4" }, last_seen = now - 60 * day,
          last_connected = now - 60 * day, score = 50 },
        -- never connected, 2 failures -> dropped third
        { node_id = id(5), addrs = { "ws://a:5" }, failures = 2, last_seen = now },
        { node_id = id(6), addrs = { "ws://a:6" }, failures = 0, last_seen = now },
        { node_id = id(7), addrs = { "ws://a:7" }, failures = 1, last_connected = now - 5 * day,
          last_seen = now - 5 * day },
        { node_id = id(8), addrs = { "ws://a:8" }, last_connected = now - 60, last_seen = now - 60 },
      }
      local ps = open(db, 5)
      for _, r in ipairs(recs) do assert.is_true(ps:put(r)) end
      assert.equal(8, ps:count()) -- the bound applies at flush
      assert.is_true(ps:flush())
      assert.equal(5, ps:count())
      assert.equal(3, ps:stats().pruned)
      local kept = { id(1), id(2), id(6), id(7), id(8) }
      assert.same(kept, sorted_ids(ps:each()))
      ps:close()
      assert.equal(5, disk_count(db))
      ps = open(db, 5)
      assert.same(kept, sorted_ids(ps:each()))
      ps:close()
    end)

    it("prefers the stale record over the fresher one among otherwise equal records", function()
      local now = os.time()
      local ps = open(db, 2)
      ps:put { node_id = id(1), addrs = { "ws://a:1" }, last_seen = now - 100, score = 1 }
      ps:put { node_id = id(2), addrs = { "ws://a:2" }, last_seen = now - 10, score = 1 }
      ps:put { node_id = id(3), addrs = { "ws://a:3" }, last_seen = now - 10, score = 2 }
      assert.is_true(ps:flush())
      assert.same({ id(2), id(3) }, sorted_ids(ps:each()))
      ps:close()
    end)

    it("stays over the bound rather than drop anchors or banned nodes; expired bans don't count", function()
      local now = os.time()
      local ps = open(db, 2)
      ps:put { node_id = id(1), anchor = true, failures = 99 }
      ps:put { node_id = id(2), anchor = true, failures = 99 }
      ps:put { node_id = id(3), ban_until = now + 600, failures = 99 }
      ps:put { node_id = id(4), ban_until = now - 1, last_connected = now, last_seen = now }
      ps:put { node_id = id(5), last_connected = now, last_seen = now, score = 100 }
      assert.is_true(ps:flush())
      assert.same({ id(1), id(2), id(3) }, sorted_ids(ps:each()))
      ps:close()
    end)

    it("prunes in memory at twice the bound, so floods between flushes stay bounded", function()
      local ps = open(db, 10)
      for i = 1, 100 do assert.is_true(ps:add_address(id(i), "ws://flood:" .. i, "exchange", 1000 + i)) end
      assert.is_true(ps:count() <= 20)
      assert.is_true(ps:flush())
      assert.equal(10, ps:count())
      ps:close()
      assert.equal(10, disk_count(db))
    end)
  end)

  it("set_anchors marks exactly the given nodes", function()
    local ps = open(db)
    for i = 1, 5 do ps:put { node_id = id(i), addrs = { "ws://a:" .. i }, anchor = (i == 1) } end
    assert.is_true(ps:set_anchors { id(2), id(3), id(42) }) -- unknown ids are ignored
    local function anchors(store)
      local out = {}
      for _, r in ipairs(store:each()) do
        if r.anchor then out[#out + 1] = r.node_id end
      end
      table.sort(out)
      return out
    end
    assert.same({ id(2), id(3) }, anchors(ps))
    assert.is_nil(ps:get(id(42)))
    assert.is_true(ps:flush())
    ps:close()
    ps = open(db)
    assert.same({ id(2), id(3) }, anchors(ps))
    -- an invalid id refuses the whole call and changes nothing
    local ok, err = ps:set_anchors { id(4), "nope" }
    assert.is_nil(ok)
    assert.is_string(err)
    assert.same({ id(2), id(3) }, anchors(ps))
    assert.is_true(ps:set_anchors {})
    assert.same({}, anchors(ps))
    ps:close()
  end)

  it("best() orders anchors, score, failures, recency and skips banned or addressless nodes", function()
    local now = 1700000000
    local ps = open(db)
    ps:put { node_id = id(1), addrs = { "ws://a:1" }, anchor = true, score = 0, failures = 3 }
    ps:put { node_id = id(2), addrs = { "ws://a:2" }, score = 5, failures = 0, last_seen = now - 10 }
    ps:put { node_id = id(3), addrs = { "ws://a:3" }, score = 5, failures = 2, last_seen = now }
    ps:put { node_id = id(4), addrs = { "ws://a:4" }, score = 5, failures = 0, last_seen = now - 100 }
    ps:put { node_id = id(5), addrs = { "ws://a:5" }, score = 9, ban_until = now + 100, last_seen = now }
    ps:put { node_id = id(6), addrs = {}, score = 10 }
    ps:put { node_id = id(7), addrs = { "ws://a:7" }, score = 9, ban_until = now - 1, last_seen = now - 1 }
    assert.same({ id(1), id(7), id(2), id(4), id(3) }, ids_of(ps:best(10, now)))
    assert.same({ id(1), id(7) }, ids_of(ps:best(2, now)))
    assert.same({}, ps:best(0, now))
    -- once node 5's ban has run out it is back, ahead of node 7 (seen more recently)
    assert.same({ id(1), id(5), id(7), id(2), id(4), id(3) }, ids_of(ps:best(10, now + 100)))
    local first = ps:best(1, now)[1]
    assert.same(ps:get(id(1)), first)
    ps:close()
  end)

  it("keeps address bans with their expiry, prunes expired ones at flush", function()
    local now = os.time()
    local ps = open(db)
    assert.is_true(ps:ban_address("192.0.2.1", now + 3600))
    assert.is_true(ps:ban_address("192.0.2.2:9000", now + 7200))
    assert.is_true(ps:ban_address("192.0.2.3", now - 5)) -- already over
    assert.equal(now + 3600, ps:address_banned("192.0.2.1", now))
    assert.equal(now + 7200, ps:address_banned("192.0.2.2:9000", now))
    assert.equal(0, ps:address_banned("192.0.2.2", now)) -- bans are exact strings
    assert.equal(0, ps:address_banned("192.0.2.3", now))
    assert.equal(0, ps:address_banned("192.0.2.1", now + 3600)) -- expiry is exclusive
    assert.equal(0, ps:address_banned("198.51.100.7", now))
    -- extending a ban replaces its expiry
    assert.is_true(ps:ban_address("192.0.2.1", now + 9000))
    assert.equal(now + 9000, ps:address_banned("192.0.2.1", now))
    assert.is_true(ps:flush())
    ps:close()

    local rows = sql(db, "SELECT addr FROM address_bans ORDER BY addr")
    assert.same({ { addr = "192.0.2.1" }, { addr = "192.0.2.2:9000" } }, rows)
    ps = open(db)
    assert.equal(now + 9000, ps:address_banned("192.0.2.1", now))
    assert.is_true(ps:unban_address("192.0.2.1"))
    assert.is_false(ps:unban_address("192.0.2.1"))
    assert.is_false(ps:unban_address("203.0.113.9"))
    assert.equal(0, ps:address_banned("192.0.2.1", now))
    -- an expired ban already on disk goes at the next flush too
    assert.is_true(ps:ban_address("192.0.2.2:9000", now - 1))
    assert.is_true(ps:flush())
    ps:close()
    assert.same({}, sql(db, "SELECT addr FROM address_bans"))
    ps = open(db)
    assert.is_nil(ps:ban_address("", now + 10))
    assert.is_nil(ps:ban_address("a b", now + 10))
    assert.is_nil(ps:ban_address("192.0.2.9", 0 / 0))
    ps:close()
  end)

  it("add_address creates records and keeps the newest addresses first", function()
    local ps = open(db)
    local n = id(77)
    assert.is_true(ps:add_address(n, "ws://a:1", "exchange", 100))
    local r = ps:get(n)
    assert.same({ "ws://a:1" }, r.addrs)
    assert.equal("exchange", r.source)
    assert.equal(100, r.first_seen)
    assert.equal(100, r.last_seen)
    assert.equal(0, r.last_connected)
    for i = 2, 5 do assert.is_true(ps:add_address(n, "ws://a:" .. i, "inbound", 100 + i)) end
    r = ps:get(n)
    assert.same({ "ws://a:5", "ws://a:4", "ws://a:3", "ws://a:2" }, r.addrs) -- the oldest fell off
    assert.equal("exchange", r.source)                                        -- where we first heard
    assert.equal(100, r.first_seen)
    assert.equal(105, r.last_seen)
    assert.is_true(ps:add_address(n, "ws://a:3", "inbound", 50)) -- an old report moves it, not time
    r = ps:get(n)
    assert.same({ "ws://a:3", "ws://a:5", "ws://a:4", "ws://a:2" }, r.addrs)
    assert.equal(105, r.last_seen)
    assert.is_true(ps:add_address(id(78), "ws://b:1", nil, 7))
    assert.equal("", ps:get(id(78)).source)
    assert.equal("", ps:get(id(78)).score_state)
    -- hearing of a node again leaves the scoring module's state alone
    assert.is_true(ps:put { node_id = id(80), addrs = { "ws://d:1" }, score_state = '{"s":1}' })
    assert.is_true(ps:add_address(id(80), "ws://d:2", "exchange", 9))
    assert.equal('{"s":1}', ps:get(id(80)).score_state)
    -- duplicates in a put are collapsed
    assert.is_true(ps:put { node_id = id(79), addrs = { "ws://c:1", "ws://c:1", "ws://c:2" } })
    assert.same({ "ws://c:1", "ws://c:2" }, ps:get(id(79)).addrs)
    ps:close()
  end)

  it("forget removes a record from memory and, at the next flush, from disk", function()
    local ps = open(db)
    for i = 1, 3 do ps:put { node_id = id(i), addrs = { "ws://a:" .. i } } end
    assert.is_true(ps:flush())
    assert.is_true(ps:forget(id(1)))
    assert.is_false(ps:forget(id(1)))
    assert.is_false(ps:forget(id(9)))
    assert.is_nil(ps:get(id(1)))
    assert.equal(2, ps:count())
    assert.equal(3, disk_count(db))
    -- forgotten then put again before the flush: the new record wins
    assert.is_true(ps:forget(id(2)))
    assert.is_true(ps:put { node_id = id(2), addrs = { "ws://new:2" } })
    -- never flushed, then forgotten: nothing reaches the disk
    ps:put { node_id = id(4), addrs = { "ws://a:4" } }
    assert.is_true(ps:forget(id(4)))
    assert.is_true(ps:flush())
    assert.equal(2, disk_count(db))
    ps:close()
    ps = open(db)
    assert.same({ id(2), id(3) }, sorted_ids(ps:each()))
    assert.same({ "ws://new:2" }, ps:get(id(2)).addrs)
    ps:close()
  end)

  it("rejects invalid node ids, addresses and fields", function()
    local ps = open(db)
    local bad_ids = {
      "", string.rep("a", 39), string.rep("a", 41), string.rep("A", 40),
      string.rep("a", 39) .. "g", string.rep("a", 39) .. " ",
      string.rep("a", 20) .. "\0" .. string.rep("a", 19),
    }
    for _, bad in ipairs(bad_ids) do
      assert.is_nil(ps:put { node_id = bad, addrs = { "ws://a:1" } }, bad)
      assert.is_nil(ps:add_address(bad, "ws://a:1", "exchange", 1), bad)
      assert.is_nil(ps:get(bad))
      assert.is_false(ps:forget(bad))
    end
    local good = id(5)
    local bad_addrs = { "", string.rep("x", 128), "ws://a b:1", "ws://a:1\n", "tab\there" }
    for _, bad in ipairs(bad_addrs) do
      assert.is_nil(ps:put { node_id = good, addrs = { bad } }, bad)
      assert.is_nil(ps:add_address(good, bad, "exchange", 1), bad)
    end
    local five = { "ws://a:1", "ws://a:2", "ws://a:3", "ws://a:4", "ws://a:5" }
    assert.is_nil(ps:put { node_id = good, addrs = five })
    assert.is_nil(ps:put { node_id = good, score = 0 / 0 })
    assert.is_nil(ps:put { node_id = good, last_seen = math.huge })
    assert.is_nil(ps:put { node_id = good, first_seen = -1 })
    assert.is_nil(ps:put { node_id = good, failures = -1 })
    assert.is_nil(ps:put { node_id = good, source = string.rep("s", 16) })
    assert.is_nil(ps:add_address(good, "ws://a:1", string.rep("s", 16), 1))
    assert.is_nil(ps:add_address(good, "ws://a:1", "exchange", 0 / 0))
    local bad_states = { string.rep("x", 512), string.rep("x", 600), '{"a":\n1}', "\t", "a\1", "\31" }
    for _, bad in ipairs(bad_states) do
      assert.is_nil(ps:put { node_id = good, score_state = bad }, bad)
    end
    assert.equal(0, ps:count())
    -- the limits themselves are fine
    assert.is_true(ps:put {
      node_id = good, addrs = { string.rep("x", 127) }, source = string.rep("s", 15),
      score_state = string.rep("x", 511),
    })
    assert.equal(1, ps:count())
    -- spaces, DEL and bytes above it are the scoring module's business
    assert.is_true(ps:put { node_id = id(6), score_state = " { } \127\128\255" })
    assert.equal(" { } \127\128\255", ps:get(id(6)).score_state)
    -- C sees the state up to its NUL; what follows is neither kept nor written
    assert.is_true(ps:put { node_id = id(7), score_state = "ab\0\1cd" })
    assert.equal("ab", ps:get(id(7)).score_state)
    assert.is_true(ps:flush())
    local stored = sql(db, "SELECT score_state FROM nodes WHERE node_id = '" .. id(7) .. "'")
    assert.same({ { score_state = "ab" } }, stored)
    ps:close()
  end)

  -- A small bound and a pool just under twice it: probe runs get long, the
  -- table grows, deletions shift entries back (across the end of a tiny table
  -- too), and every flush prunes.
  local sizes = { { max = 64, pool = 120, steps = 12000 }, { max = 4, pool = 7, steps = 8000 } }
  for _, size in ipairs(sizes) do
    it("agrees with a plain table under random operations (bound " .. size.max .. ")", function()
      math.randomseed(20261124 + size.max)
      local max, pool = size.max, size.pool
      local ps = open(db, max)
      local model, n = {}, 0
      local function check_all()
        local seen = 0
        for _, r in ipairs(ps:each()) do
          seen = seen + 1
          assert.same(model[r.node_id], r)
        end
        assert.equal(n, seen)
        assert.equal(n, ps:count())
      end
      local function sync() -- after a prune the store decides; it must hold a subset of the model
        local fresh = {}
        n = 0
        for _, r in ipairs(ps:each()) do
          assert.same(model[r.node_id], r)
          fresh[r.node_id] = r
          n = n + 1
        end
        assert.is_true(n <= max)
        model = fresh
      end
      for step = 1, size.steps do
        local k = id(math.random(pool))
        local op = math.random(100)
        if op <= 45 then
          local r = {
            node_id = k, addrs = { "ws://m:" .. step }, score = math.random(1000) / 8,
            failures = math.random(0, 3), last_seen = 1e9 + step, first_seen = 0, last_connected = 0,
            source = "console", is_validator = false, ban_until = 0, anchor = false,
            score_state = step % 3 == 0 and "" or string.format('{"step":%d}', step),
          }
          assert.is_true(ps:put(r))
          if not model[k] then n = n + 1 end
          model[k] = r
        elseif op <= 70 then
          assert.equal(model[k] ~= nil, ps:forget(k))
          if model[k] then n = n - 1 end
          model[k] = nil
        elseif op <= 90 then
          local got = ps:get(k)
          if model[k] then assert.same(model[k], got) else assert.is_nil(got) end
        elseif op <= 97 then
          assert.is_true(ps:flush())
          sync()
        else
          ps:close()
          ps = open(db, max)
          sync()
        end
        assert.equal(n, ps:count())
      end
      check_all()
      assert.is_true(ps:flush()) -- the bound applies: the model follows the store
      sync()
      ps:close()
      ps = open(db, max)
      check_all()
      ps:close()
    end)
  end

  describe("refuses files that are not its own", function()
    it("garbage", function()
      write_file(db, "this is not a database, it is a grocery list\n" .. string.rep("\1\2\3", 3000))
      local ps, err = sys.peerstore_open(db, 0)
      assert.is_nil(ps)
      assert.equal(db .. ": not a bt2c peer store (file is not a database)", err)
    end)

    it("another program's sqlite database, left untouched", function()
      sql(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)")
      local ps, err = sys.peerstore_open(db, 0)
      assert.is_nil(ps)
      assert.matches(db .. ": not a bt2c peer store (", err, 1, true)
      assert.equal("delete", sql(db, "PRAGMA journal_mode")[1].journal_mode)
      sql(db, "PRAGMA application_id = 42")
      sql(db, "DROP TABLE t")
      ps, err = sys.peerstore_open(db, 0)
      assert.is_nil(ps)
      assert.equal(db .. ": not a bt2c peer store (application_id 0x0000002a)", err)
    end)

    it("a newer schema version, left untouched", function()
      open(db):close()
      for _, v in ipairs { 3, 9 } do
        sql(db, "PRAGMA user_version = " .. v)
        local ps, err = sys.peerstore_open(db, 0)
        assert.is_nil(ps)
        assert.equal(db .. ": peer store schema version " .. v .. " is newer than this bt2cd reads (2); "
          .. "upgrade bt2cd or move the file away", err)
        assert.equal(tostring(v), sql(db, "PRAGMA user_version")[1].user_version)
      end
    end)

    it("schema version 0 with our application id", function()
      sql(db, "PRAGMA application_id = 1651782243")
      local ps, err = sys.peerstore_open(db, 0)
      assert.is_nil(ps)
      assert.equal(db .. ": not a bt2c peer store (schema version 0)", err)
    end)

    it("a store whose pages were overwritten", function()
      local ps = open(db)
      for i = 1, 400 do ps:put { node_id = id(i), addrs = { "ws://corrupt:" .. i }, source = "console" } end
      ps:close()
      local data = read_file(db)
      assert.is_true(#data > 3 * 4096)
      write_file(db, data:sub(1, 4096) .. string.rep("\255", #data - 4096))
      local ok, err = sys.peerstore_open(db, 0)
      assert.is_nil(ok)
      assert.matches(db .. ": ", err, 1, true)
    end)

    it("a path it cannot open", function()
      local ps, err = sys.peerstore_open(tmp .. "/no/such/dir/peers.sqlite", 0)
      assert.is_nil(ps)
      assert.matches(tmp .. "/no/such/dir/peers.sqlite: ", err, 1, true)
      ps, err = sys.peerstore_open(tmp, 0) -- a directory
      assert.is_nil(ps)
      assert.matches(tmp .. ": ", err, 1, true)
    end)
  end)

  describe("schema upgrade", function()
    -- A peer store exactly as schema version 1 (the first bt2cd) created it:
    -- the same statements in one transaction, WAL, the same marks.
    local V1_SCHEMA = [[
PRAGMA journal_mode=WAL;
BEGIN IMMEDIATE;
CREATE TABLE nodes (
  node_id TEXT PRIMARY KEY NOT NULL,
  pubkey BLOB,
  addrs TEXT NOT NULL DEFAULT '',
  first_seen REAL NOT NULL DEFAULT 0,
  last_seen REAL NOT NULL DEFAULT 0,
  last_connected REAL NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  source TEXT NOT NULL DEFAULT '',
  is_validator INTEGER NOT NULL DEFAULT 0,
  score REAL NOT NULL DEFAULT 0,
  ban_until REAL NOT NULL DEFAULT 0,
  anchor INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE address_bans (
  addr TEXT PRIMARY KEY NOT NULL,
  until REAL NOT NULL
) WITHOUT ROWID;
PRAGMA application_id = 1651782243; PRAGMA user_version = 1;
COMMIT;
]]

    local function quote(v)
      return "'" .. v:gsub("'", "''") .. "'"
    end

    -- The row the version 1 flush wrote for rec (all twelve columns, always).
    local function v1_insert(rec)
      local pubkey = "NULL"
      if rec.pubkey then
        pubkey = "X'" .. rec.pubkey:gsub(".", function(c) return string.format("%02x", c:byte()) end) .. "'"
      end
      local function num(k) return string.format("%.17g", rec[k] or 0) end
      local function flag(k) return rec[k] and "1" or "0" end
      return string.format("INSERT INTO nodes (node_id, pubkey, addrs, first_seen, last_seen, "
        .. "last_connected, failures, source, is_validator, score, ban_until, anchor) "
        .. "VALUES (%s, %s, %s, %s, %s, %s, %d, %s, %s, %s, %s, %s);\n",
        quote(rec.node_id), pubkey, quote(table.concat(rec.addrs or {}, " ")), num("first_seen"),
        num("last_seen"), num("last_connected"), rec.failures or 0, quote(rec.source or ""),
        flag("is_validator"), num("score"), num("ban_until"), flag("anchor"))
    end

    -- The record as get() returns it once upgraded: every field, no state yet.
    local function upgraded(rec)
      return {
        node_id = rec.node_id, pubkey = rec.pubkey, addrs = rec.addrs or {},
        first_seen = rec.first_seen or 0, last_seen = rec.last_seen or 0,
        last_connected = rec.last_connected or 0, failures = rec.failures or 0,
        source = rec.source or "", is_validator = rec.is_validator or false, score = rec.score or 0,
        ban_until = rec.ban_until or 0, anchor = rec.anchor or false, score_state = "",
      }
    end

    local recs = {
      {
        node_id = id(0xabc), pubkey = "\0\1\2\3" .. string.rep("\255", 24) .. "\0\0\0\7",
        addrs = { "ws://[2001:db8::1]:9000", "wss://node.example:443", "ws://10.0.0.1:1", "ws://b:2" },
        first_seen = 1700000000.25, last_seen = 1700000123.5, last_connected = 1700000100.125,
        failures = 7, source = "exchange", is_validator = true, score = -12.375,
        ban_until = 1800000000.5, anchor = true,
      },
      { node_id = id(1) },
    }
    for i = 2, 301 do
      recs[#recs + 1] = {
        node_id = id(i), addrs = { "ws://10.0." .. (i // 250) .. "." .. (i % 250) .. ":9000" },
        first_seen = 1000 + i, last_seen = 2000 + i + 1 / 3, failures = i % 5, source = "bootstrap",
        score = i / 7, is_validator = i % 2 == 0, anchor = i == 7,
      }
    end
    local bans = { ["192.0.2.1"] = 4e9, ["198.51.100.7:9000"] = 4000000000.75 }

    local function make_v1(path)
      local script = { (V1_SCHEMA:gsub("COMMIT;\n$", "")) } -- the rows go in the same transaction
      for _, r in ipairs(recs) do script[#script + 1] = v1_insert(r) end
      for addr, until_ in pairs(bans) do
        script[#script + 1] =
          string.format("INSERT INTO address_bans VALUES (%s, %.17g);\n", quote(addr), until_)
      end
      script[#script + 1] = "COMMIT;"
      sql(path, table.concat(script))
      assert.equal("1", sql(path, "PRAGMA user_version")[1].user_version)
    end

    local function columns(path)
      return sql(path, "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('nodes')")
    end

    it("upgrades a version 1 file in place and keeps every row", function()
      make_v1(db)
      local ps = open(db)
      assert.equal(#recs, ps:count())
      for _, r in ipairs(recs) do assert.same(upgraded(r), ps:get(r.node_id)) end
      for addr, until_ in pairs(bans) do assert.equal(until_, ps:address_banned(addr, 0)) end
      -- the upgrade was one transaction, and left nothing to write
      assert.equal(1, ps:stats().commits)
      assert.is_true(ps:flush())
      assert.equal(1, ps:stats().commits)
      ps:close()

      assert.equal("2", sql(db, "PRAGMA user_version")[1].user_version)
      assert.equal(tostring(0x62743263), sql(db, "PRAGMA application_id")[1].application_id)
      assert.equal("wal", sql(db, "PRAGMA journal_mode")[1].journal_mode)
      assert.same({ { integrity_check = "ok" } }, sql(db, "PRAGMA integrity_check"))
      assert.same({ { n = "0" } }, sql(db, "SELECT count(*) AS n FROM nodes WHERE score_state <> ''"))
      -- an upgraded file has the columns a new one has
      local fresh = tmp .. "/fresh.sqlite"
      open(fresh):close()
      assert.same(columns(fresh), columns(db))

      -- and works as one: a second open does not upgrade again, the state round-trips
      ps = open(db)
      local r = ps:get(id(0xabc))
      r.score_state = '{"v":2}'
      assert.is_true(ps:put(r))
      ps:close()
      ps = open(db)
      assert.same(r, ps:get(id(0xabc)))
      assert.same(upgraded(recs[2]), ps:get(id(1)))
      assert.equal(#recs, ps:count())
      ps:close()
    end)

    it("leaves a version 1 file as it was when the upgrade cannot take the write lock", function()
      make_v1(db)
      local lock = sys.peerstore_lock(db) -- another writer
      local ps, err = sys.peerstore_open(db, 0)
      lock:unlock()
      assert.is_nil(ps)
      assert.matches(db .. ": cannot upgrade the peer store from schema version 1 to 2, "
        .. "file left as it was: ", err, 1, true)
      assert.equal("1", sql(db, "PRAGMA user_version")[1].user_version)
      assert.equal(12, #columns(db))
      assert.equal(#recs, disk_count(db))
      -- the next open upgrades it
      ps = open(db)
      assert.equal(#recs, ps:count())
      ps:close()
      assert.equal("2", sql(db, "PRAGMA user_version")[1].user_version)
    end)

    it("resets a stored state it could not have written, and rewrites the row", function()
      open(db):close()
      local long = string.rep("y", 512)
      sql(db, "INSERT INTO nodes (node_id, addrs, score, score_state) VALUES "
        .. "('" .. id(1) .. "', 'ws://a:1', 3, 'line' || char(10) || 'break'), "
        .. "('" .. id(2) .. "', 'ws://a:2', 4, '" .. long .. "'), "
        .. "('" .. id(3) .. "', 'ws://a:3', 5, 'a' || char(0) || 'b'), "
        .. "('" .. id(4) .. "', 'ws://a:4', 6, '" .. string.rep("z", 511) .. "')")
      local ps = open(db)
      assert.equal(4, ps:count())
      assert.equal("", ps:get(id(1)).score_state)
      assert.equal(3, ps:get(id(1)).score) -- the rest of the row is kept
      assert.equal("", ps:get(id(2)).score_state)
      assert.equal("", ps:get(id(3)).score_state)
      assert.equal(string.rep("z", 511), ps:get(id(4)).score_state)
      assert.is_true(ps:flush())
      assert.equal(3, ps:stats().rows_written)
      ps:close()
      assert.same({ { n = "3" } }, sql(db, "SELECT count(*) AS n FROM nodes WHERE score_state = ''"))
    end)
  end)

  describe("kill -9", function()
    local function spawn_child(script)
      local pid = sys.spawn {
        argv = { lua54(), "-e", script },
        stdout = tmp .. "/child.out",
        stderr = tmp .. "/child.err",
      }
      return pid
    end

    local function kill9(pid)
      assert.is_true(sys.kill(pid, "KILL"))
      local st = sys.wait(pid, 10)
      assert.same({ signaled = true, signal = 9 }, st)
    end

    local function record(i, score)
      return {
        node_id = id(i), addrs = { "ws://10.0." .. (i // 250) .. "." .. (i % 250) .. ":9000" },
        first_seen = 1000 + i, last_seen = 2000 + i, failures = i % 5, source = "exchange",
        score = score, is_validator = i % 2 == 0, score_state = '{"i":' .. i .. '}',
      }
    end

    it("keeps every flushed record intact and none of the unflushed ones", function()
      local marker = tmp .. "/ready"
      local script = string.format([[
        local b = require "bt2c"
        local db, marker = %q, %q
        local ps = assert(b.peerstore_open(db, 0))
        local function id(n) return string.format("%%040x", n) end
        local function record(i, score)
          return {
            node_id = id(i), addrs = { "ws://10.0." .. (i // 250) .. "." .. (i %% 250) .. ":9000" },
            first_seen = 1000 + i, last_seen = 2000 + i, failures = i %% 5, source = "exchange",
            score = score, is_validator = i %% 2 == 0, score_state = '{"i":' .. i .. '}',
          }
        end
        for i = 1, 300 do assert(ps:put(record(i, i / 4))) end
        assert(ps:ban_address("192.0.2.1", 4e9))
        assert(ps:flush())
        for i = 301, 600 do assert(ps:put(record(i, i / 4))) end
        assert(ps:put(record(1, 999)))
        assert(ps:forget(id(2)))
        assert(ps:ban_address("192.0.2.2", 4e9))
        local f = assert(io.open(marker, "w")) f:write("ok") f:close()
        b.sleep(60)
      ]], db, marker)
      local pid = spawn_child(script)
      local ready = wait_for(function() return read_file(marker) == "ok" end, 20)
      if not ready then
        sys.kill(pid, "KILL")
        sys.wait(pid, 5)
        error("child never got ready: " .. tostring(read_file(tmp .. "/child.err")))
      end
      kill9(pid)

      assert.same({ { integrity_check = "ok" } }, sql(db, "PRAGMA integrity_check"))
      local ps = open(db)
      assert.equal(300, ps:count())
      for i = 1, 300 do
        local want = record(i, i / 4)
        want.last_connected, want.ban_until, want.anchor = 0, 0, false
        assert.same(want, ps:get(id(i)))
      end
      assert.is_nil(ps:get(id(301)))
      assert.is_nil(ps:get(id(600)))
      assert.is_true(ps:address_banned("192.0.2.1", os.time()) > 0)
      assert.equal(0, ps:address_banned("192.0.2.2", os.time()))
      -- and the store works normally afterwards
      assert.is_true(ps:put(record(700, 1)))
      assert.is_true(ps:flush())
      ps:close()
      assert.equal(301, disk_count(db))
    end)

    it("never leaves half a flush behind, wherever the kill lands", function()
      local progress = tmp .. "/round"
      local script = string.format([[
        local b = require "bt2c"
        local db, progress = %q, %q
        local ps = assert(b.peerstore_open(db, 0))
        for round = 1, math.huge do
          for i = 1, 400 do
            assert(ps:put { node_id = string.format("%%040x", i), addrs = { "ws://r:" .. i }, score = round })
          end
          assert(ps:flush())
          local f = assert(io.open(progress .. ".tmp", "w")) f:write(round) f:close()
          os.rename(progress .. ".tmp", progress)
        end
      ]], db, progress)
      for attempt = 1, 3 do
        os.remove(db)
        os.remove(db .. "-wal")
        os.remove(db .. "-shm")
        os.remove(progress)
        local pid = spawn_child(script)
        assert.is_true(wait_for(function() return tonumber(read_file(progress) or "") ~= nil end, 20),
          read_file(tmp .. "/child.err"))
        sys.sleep(0.013 * attempt)
        local seen = tonumber(read_file(progress))
        kill9(pid)
        local ps = open(db)
        assert.equal(400, ps:count())
        local score = ps:get(id(1)).score
        assert.is_true(score >= seen)
        for _, r in ipairs(ps:each()) do assert.equal(score, r.score) end
        ps:close()
      end
    end)
  end)
end)
