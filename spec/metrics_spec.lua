-- Functional: the metrics endpoint of a real bt2cd (docs/METRICS.md). Node A
-- serves metrics = { host = "127.0.0.1", port = <free> }; node B dials it and
-- the two exchange messages. /metrics is checked with the Prometheus client's
-- own parser (Debian's python3-prometheus-client) and against the console's
-- numbers taken at the same moment; /status against the console's
-- network.get_network_status(). Then the HTTP edges (404, 405, 400), metrics
-- off, a port that cannot be had, and clients that are slow, silent, garbage
-- or too many: none of them may hold up the node.
local H = require "helpers.node"
local sys = H.sys
local cjson = require "cjson"

local PYTHON = "/usr/bin/python3" -- Debian's, with python3-prometheus-client
local QUIET = { pingInterval = 600000, peerDiscoveryInterval = 600000 } -- no traffic of its own

local url = H.url

-- ---- a tiny HTTP/1.1 client over bt2c.tcp_connect --------------------------

-- Sends `request` as is and reads until the server closes; returns
-- {status, reason, headers (lowercase names), body}, or nil and why.
local function http_raw(port, request, timeout)
  local conn, err = sys.tcp_connect("127.0.0.1", port)
  if not conn then return nil, "connect: " .. tostring(err) end
  conn:send(request)
  local chunks, why = {}, nil
  local deadline = sys.now() + (timeout or 10)
  while true do
    local left = deadline - sys.now()
    if left <= 0 then why = "timeout" break end
    local data, e = conn:recv(left)
    if not data then
      if e ~= "closed" then why = e end
      break
    end
    chunks[#chunks + 1] = data
  end
  conn:close()
  if why then return nil, why end
  local text = table.concat(chunks)
  local head, body = text:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "no header end in " .. ("%q"):format(text:sub(1, 200)) end
  local status, reason = head:match("^HTTP/1%.[01] (%d%d%d) ([^\r\n]*)")
  if not status then return nil, "bad status line " .. ("%q"):format(head:sub(1, 80)) end
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[name:lower()] = value end
  local len = tonumber(headers["content-length"])
  if len ~= #body then return nil, ("content-length %s, body %d bytes"):format(tostring(len), #body) end
  return { status = tonumber(status), reason = reason, headers = headers, body = body }
end

local function request(method, path, extra)
  return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: metrics_spec\r\n%s\r\n"):format(method, path,
    extra or "")
end

local function http_get(port, path)
  local r, err = http_raw(port, request("GET", path))
  assert(r, "GET " .. path .. ": " .. tostring(err))
  return r
end

-- ---- exposition checks ---------------------------------------------------

local PARSE = [[
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                            for s in f.samples]})
print(json.dumps(out))
]]

local parse_script
local function parse_exposition(text)
  if not parse_script then
    local dir = H.tmpdir()
    parse_script = dir .. "/parse.py"
    H.write_file(parse_script, PARSE)
  end
  local code, out, err = H.run({ PYTHON, parse_script }, { stdin = text })
  assert(code == 0, "the Prometheus parser refused /metrics:\n" .. err)
  return cjson.decode(out)
end

local function sample_key(name, labels)
  local parts = {}
  for k, v in pairs(labels or {}) do parts[#parts + 1] = k .. "=" .. v end
  table.sort(parts)
  return name .. "{" .. table.concat(parts, ",") .. "}"
end

-- Validates the families (beyond what the lax parser checks) and returns
-- {families = {name = family}, value = {key = number}}.
local function check_exposition(text)
  local fams = parse_exposition(text)
  local by_name, values = {}, {}
  assert.is_true(#fams > 20, "too few families")
  for _, f in ipairs(fams) do
    local what = "family " .. f.name
    assert.is_nil(by_name[f.name], what .. " appears twice")
    by_name[f.name] = f
    assert.truthy(({ counter = true, gauge = true, histogram = true })[f.type],
      what .. " has no TYPE (or an unexpected one): " .. f.type)
    assert.truthy(f.help ~= "", what .. " has no HELP")
    assert.truthy(#f.samples > 0, what .. " has no samples")
    for _, s in ipairs(f.samples) do
      assert.truthy(s.name:match("^bt2c_[a-z0-9_]+$"), "bad sample name " .. s.name)
      if f.type == "counter" then
        assert.truthy(s.name:match("_total$"), "counter sample " .. s.name .. " does not end in _total")
        assert.truthy(s.value >= 0, s.name .. " is a negative counter")
      end
      local key = sample_key(s.name, s.labels)
      assert.is_nil(values[key], "sample " .. key .. " appears twice")
      values[key] = s.value
    end
    if f.type == "histogram" then
      local last, inf, count = -1, nil, nil
      for _, s in ipairs(f.samples) do
        if s.name == f.name .. "_bucket" then
          assert.truthy(s.value >= last, f.name .. " buckets are not cumulative")
          last = s.value
          if s.labels.le == "+Inf" then inf = s.value end
        elseif s.name == f.name .. "_count" then
          count = s.value
        end
      end
      assert.equal(count, inf, f.name .. ": the +Inf bucket must equal _count")
    end
  end
  -- the text itself: HELP then TYPE once per family, every other line a sample
  local typed = {}
  local prev_help
  for line in text:gmatch("[^\n]+") do
    local kind, name = line:match("^# (%u+) (%S+)")
    if kind == "HELP" then
      prev_help = name
    elseif kind == "TYPE" then
      assert.equal(prev_help, name, "TYPE " .. name .. " without its HELP just before")
      assert.is_nil(typed[name], "TYPE " .. name .. " twice")
      typed[name] = true
    else
      local ok = line:match("^bt2c_[a-z0-9_]+{.*} [%d.eE+-]+$") or line:match("^bt2c_[a-z0-9_]+ [%d.eE+-]+$")
        or line:match("^bt2c_[a-z0-9_]+.* [+-]Inf$") or line:match("^bt2c_[a-z0-9_]+.* NaN$")
      assert.truthy(ok, "malformed line: " .. line)
    end
  end
  return { families = by_name, value = values }
end

local function metric(m, name, labels)
  local v = m.value[sample_key(name, labels)]
  assert(v ~= nil, "no sample " .. sample_key(name, labels))
  return v
end

-- ---- console side ----------------------------------------------------------

-- Two readings that bracket the HTTP fetches: A takes the policy counters
-- last, B first, so relay.get_stats (which may ask the relay policy for its
-- modes) cannot make them differ by itself.
local READ_A = [[local s = network.get_network_status() local r = relay.get_stats()
  local t = scoring.get_top_peers(10000)
  return {status = s, relay = r, top = t, policy = policy.errors()}]]
local READ_B = [[local p = policy.errors() local t = scoring.get_top_peers(10000)
  return {status = network.get_network_status(), relay = relay.get_stats(), top = t, policy = p}]]

local POLICY_FIELDS = { "calls", "errors", "timeouts", "oom", "bad_returns", "defaulted", "disabled" }

local function comparable(reading)
  local pol = {}
  for hook, c in pairs(reading.policy) do
    pol[hook] = {}
    for _, k in ipairs(POLICY_FIELDS) do pol[hook][k] = c[k] end
  end
  reading.relay.modes = nil
  return { status = reading.status, relay = reading.relay, top = reading.top, policy = pol }
end

-- Console, /metrics, /status, console; retried until the console readings
-- agree, i.e. nothing happened in between.
local function consistent_snapshot(node, port)
  for _ = 1, 10 do
    local a = comparable(node:eval(READ_A))
    local mr = http_get(port, "/metrics")
    local sr = http_get(port, "/status")
    local b = comparable(node:eval(READ_B))
    if H.lua_literal(a) == H.lua_literal(b) then return a, mr, sr end
    sys.sleep(0.2)
  end
  error("the node never stood still for a consistent snapshot")
end

-- ---- /proc: the node's listening TCP ports -----------------------------------

local function listening_ports(pid)
  local inodes = {}
  local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"))
  for inode in p:read("a"):gmatch("socket:%[(%d+)%]") do inodes[inode] = true end
  p:close()
  local ports = {}
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for line in (H.read_file(f) or ""):gmatch("[^\n]+") do
      local port, st, inode = line:match(
        "^%s*%d+: %x+:(%x+) %x+:%x+ (%x%x) %x+:%x+ %x+:%x+ %x+%s+%d+%s+%d+%s+(%d+)")
      if st == "0A" and inodes[inode] then ports[#ports + 1] = tonumber(port, 16) end
    end
  end
  table.sort(ports)
  return ports
end

local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

describe("metrics endpoint", function()
  local A, B, MPORT, A_ID, B_ID

  setup(function()
    MPORT = sys.free_port()
    A = H.start({ config = { metrics = { host = "127.0.0.1", port = MPORT },
      pingInterval = QUIET.pingInterval, peerDiscoveryInterval = QUIET.peerDiscoveryInterval } })
    B = H.start({ config = { bootstrapPeers = { url(A) },
      pingInterval = QUIET.pingInterval, peerDiscoveryInterval = QUIET.peerDiscoveryInterval } })
    assert.truthy(H.wait_for(function()
      return A:eval("return network.get_network_status().peers.total") == 1
        and B:eval("return network.get_network_status().peers.total") == 1
    end, 10, 0.1), "A and B did not connect")
    A_ID = A:eval("return network.get_network_status().nodeId")
    B_ID = B:eval("return network.get_network_status().nodeId")

    -- traffic: B -> A one hop, A's broadcast to B, B's to A, a direct message. The type is
    -- transaction without a hash: the chain store leaves such payloads to listeners.
    A:eval([[got = 0 network.on("message:transaction", function() got = got + 1 end) return true]])
    B:eval([[got = 0 network.on("message:transaction", function() got = got + 1 end) return true]])
    for i = 1, 3 do
      assert.is_true(B:eval(("return network.send_message(%q, {type = 'transaction', data = {n = %d}})")
        :format(A_ID, i)))
    end
    assert.equal(1, A:eval("return network.broadcast_message({type = 'transaction', data = {a = 1}})"))
    assert.equal(1, B:eval("return network.broadcast_message({type = 'transaction', data = {b = 1}})"))
    B:eval(("return relay.send_direct_relay_message(%q, {type = 'transaction', data = {d = 1}})")
      :format(A_ID))
    assert.truthy(H.wait_for(function()
      return A:eval("return got") >= 5 and B:eval("return got") >= 1
    end, 10, 0.1), "the messages did not arrive")
    -- a refusal by close code (4004: a connection to itself) and an operator ban
    A:eval(("return network.connect(%q)"):format(url(A)))
    assert.truthy(A:wait_log("code=4004", 10))
    assert.truthy(H.wait_for(function()
      local s = A:eval("return network.get_network_status()")
      return s.peers.handshaking == 0 and s.peers.dialing == 0
    end, 10, 0.1))
    A:eval(("return scoring.ban(%q, 3600)"):format(("ab"):rep(20)))
  end)

  teardown(function() H.cleanup() end)

  it("logs where it listens", function()
    assert.truthy(A:wait_log("event=metrics_listening host=127.0.0.1 port=" .. MPORT, 5))
  end)

  it("serves /metrics as valid Prometheus text with HELP and TYPE for every family", function()
    local r = http_get(MPORT, "/metrics")
    assert.equal(200, r.status)
    assert.equal("text/plain; version=0.0.4; charset=utf-8", r.headers["content-type"])
    local m = check_exposition(r.body)
    -- docs/METRICS.md and the endpoint list the same families (the parser
    -- names a counter family without its _total)
    local documented = {}
    for name in H.read_file(H.SOURCE .. "/docs/METRICS.md"):gmatch("\n| `(bt2c_[a-z0-9_]+)`") do
      documented[(name:gsub("_total$", ""))] = true
    end
    for name in pairs(documented) do assert.truthy(m.families[name], name .. " is documented, not served") end
    for name in pairs(m.families) do assert.truthy(documented[name], name .. " is served, not documented") end
    assert.equal(1, metric(m, "bt2c_node_info", { node_id = A_ID, network_id = "bt2c-mainnet" }))
    assert.truthy(metric(m, "bt2c_uptime_seconds") > 0)
    assert.equal(1, metric(m, "bt2c_bans_active"))
  end)

  it("agrees with the console, number for number, at the same moment", function()
    local c, mr = consistent_snapshot(A, MPORT)
    local m = check_exposition(mr.body)
    local st = c.status
    -- peers
    local P = "bt2c_peers"
    assert.equal(st.peers.inbound, metric(m, P, { direction = "inbound", state = "established" }))
    assert.equal(st.peers.outbound, metric(m, P, { direction = "outbound", state = "established" }))
    assert.equal(st.peers.dialing, metric(m, P, { direction = "outbound", state = "dialing" }))
    assert.equal(st.peers.handshaking, metric(m, P, { direction = "inbound", state = "handshaking" })
      + metric(m, P, { direction = "outbound", state = "handshaking" }))
    assert.equal(1, st.peers.inbound)
    assert.equal(st.peers.maxPeers, metric(m, "bt2c_peer_limit", { direction = "any" }))
    -- messages and bytes by type and direction, every type
    local types, seen_traffic = {}, 0
    for key in pairs(m.value) do
      local t = key:match("^bt2c_messages_total{direction=in,type=([%w_]+)}$")
      if t then types[#types + 1] = t end
    end
    assert.is_true(#types >= 13)
    for _, t in ipairs(types) do
      for _, dir in ipairs({ "in", "out" }) do
        local want = (st.messages[dir] or {})[t] or 0
        assert.equal(want, metric(m, "bt2c_messages_total", { type = t, direction = dir }), t .. " " .. dir)
        assert.equal((st.bytes[dir] or {})[t] or 0,
          metric(m, "bt2c_message_bytes_total", { type = t, direction = dir }), t .. " bytes " .. dir)
        seen_traffic = seen_traffic + want
      end
    end
    assert.is_true(st.messages["in"].transaction >= 4)
    assert.is_true(seen_traffic > 0)
    -- connection counters and refusals by close code
    local k = st.counters
    assert.equal(k.accepted, metric(m, "bt2c_connections_accepted_total"))
    assert.equal(k.dialled, metric(m, "bt2c_dials_total"))
    assert.equal(k.dialFailures, metric(m, "bt2c_dial_failures_total"))
    assert.equal(k.handshakesOk, metric(m, "bt2c_handshakes_total", { result = "ok" }))
    assert.equal(k.handshakesFailed, metric(m, "bt2c_handshakes_total", { result = "failed" }))
    assert.equal(k.invalidMessages, metric(m, "bt2c_invalid_messages_total"))
    assert.equal(k.droppedSends, metric(m, "bt2c_dropped_sends_total"))
    assert.is_true((k.refusedByCode["4004"] or 0) >= 1)
    for code = 4000, 4012 do
      local c_ = tostring(code)
      assert.equal(k.refusedByCode[c_] or 0, metric(m, "bt2c_refusals_total", { code = c_ }), c_)
    end
    -- relay, against relay.get_stats()
    local rs = c.relay
    local sums = { received = 0, delivered = 0, relayed = 0, duplicates = 0 }
    for key, v in pairs(m.value) do
      local what, t = key:match("^bt2c_relay_(%l+)_total{type=([%w_]+)}$")
      if sums[what] then
        sums[what] = sums[what] + v
        assert.equal(((rs.byType or {})[t] or {})[what] or 0, v, what .. " " .. t)
      end
    end
    for what, v in pairs(sums) do assert.equal(rs[what], v, "relay " .. what) end
    assert.is_true(rs.received >= 4)
    for reason, v in pairs(rs.dropped) do
      assert.equal(v, metric(m, "bt2c_relay_dropped_total", { reason = reason }), "dropped " .. reason)
    end
    assert.equal(rs.seen.size, metric(m, "bt2c_relay_seen_entries"))
    assert.equal(rs.seen.capacity, metric(m, "bt2c_relay_seen_capacity"))
    assert.equal(rs.seen.evictedEarly, metric(m, "bt2c_relay_seen_evicted_early_total"))
    assert.equal(rs.direct.sent, metric(m, "bt2c_relay_direct_sent_total"))
    assert.equal(rs.direct.delivered, metric(m, "bt2c_relay_direct_results_total", { result = "delivered" }))
    assert.equal(rs.direct.failed, metric(m, "bt2c_relay_direct_results_total", { result = "failed" }))
    -- scores and levels, against scoring.get_top_peers (every record in memory)
    local levels, sum = { banned = 0, below_neutral = 0, neutral = 0, trusted = 0 }, 0
    for _, p in ipairs(c.top) do
      levels[p.level] = levels[p.level] + 1
      sum = sum + p.total_score
    end
    assert.equal(#c.top, metric(m, "bt2c_peer_score_count"))
    assert.near(sum, metric(m, "bt2c_peer_score_sum"), 1e-6)
    for level, n in pairs(levels) do
      assert.equal(n, metric(m, "bt2c_peer_score_level", { level = level }), level)
    end
    -- policy hooks, against policy.errors()
    for hook, cnt in pairs(c.policy) do
      for _, f in ipairs({ "calls", "errors", "timeouts", "oom", "bad_returns", "defaulted" }) do
        assert.equal(cnt[f], metric(m, "bt2c_policy_" .. f .. "_total", { hook = hook }), hook .. " " .. f)
      end
      assert.equal(cnt.disabled and 1 or 0, metric(m, "bt2c_policy_hook_disabled", { hook = hook }))
    end
    assert.is_true(c.policy["handshake.validate"].calls >= 1)
  end)

  it("serves /status as exactly what network.get_network_status() returns", function()
    local c, _, sr = consistent_snapshot(A, MPORT)
    assert.equal(200, sr.status)
    assert.equal("application/json", sr.headers["content-type"])
    local status = cjson.decode(sr.body)
    -- field by field, both ways; get_network_status has no uptime-like field yet
    for k, v in pairs(c.status) do assert.same(v, status[k], "field " .. k) end
    for k in pairs(status) do assert.is_not_nil(c.status[k], "extra field " .. k) end
    assert.equal(A_ID, status.nodeId)
    assert.equal(1, status.peers.inbound)
    assert.is_true(status.counters.refusedByCode["4004"] >= 1)
    -- B's view over HTTP would need B's metrics; B's console still tells its side
    assert.equal(1, B:eval("return network.get_network_status().peers.outbound"))
    assert.truthy(B_ID)
  end)

  it("answers 404 to other paths and 405 to other methods, and refuses a body", function()
    for _, path in ipairs({ "/", "/metric", "/metrics/x", "/statusx", "/nosuch?x=1" }) do
      local r = http_get(MPORT, path)
      assert.equal(404, r.status, path)
      assert.equal("Not Found", r.reason)
    end
    -- a query string does not change the path
    assert.equal(200, http_get(MPORT, "/metrics?debug=1").status)
    for _, method in ipairs({ "POST", "PUT", "DELETE", "PATCH", "OPTIONS" }) do
      local r = assert(http_raw(MPORT, request(method, "/metrics", "Content-Length: 0\r\n")))
      assert.equal(405, r.status, method)
      assert.equal("GET", r.headers.allow, method)
    end
    local r = assert(http_raw(MPORT, request("POST", "/status", "Content-Length: 11\r\n") .. "hello=world"))
    assert.equal(405, r.status)
    -- HEAD: 405 too, and no body
    r = assert(http_raw(MPORT, request("HEAD", "/metrics")))
    assert.equal(405, r.status)
    assert.equal("", r.body)
    -- GET with a body
    r = assert(http_raw(MPORT, request("GET", "/metrics", "Content-Length: 5\r\n") .. "12345"))
    assert.equal(400, r.status)
    -- a WebSocket upgrade is not served here
    local up = http_raw(MPORT, request("GET", "/metrics", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"), 5)
    assert.is_true(up == nil or up.status ~= 101)
    -- and the endpoint counted what it answered
    local m = check_exposition(http_get(MPORT, "/metrics").body)
    assert.is_true(metric(m, "bt2c_metrics_responses_total", { code = "404" }) >= 5)
    assert.is_true(metric(m, "bt2c_metrics_responses_total", { code = "405" }) >= 7)
    assert.is_true(metric(m, "bt2c_metrics_responses_total", { code = "400" }) >= 1)
  end)

  it("is not blocked by slow, silent, garbage or oversized clients", function()
    local held = {}
    for _ = 1, 6 do -- half a request, then nothing
      local c = assert(sys.tcp_connect("127.0.0.1", MPORT))
      c:send("GET /metr")
      held[#held + 1] = c
    end
    for _ = 1, 3 do -- connects and says nothing
      held[#held + 1] = assert(sys.tcp_connect("127.0.0.1", MPORT))
    end
    local junk = {}
    for i = 1, 4096 do junk[i] = string.char((i * 37 + 11) % 256) end
    for _ = 1, 3 do -- binary garbage
      local c = assert(sys.tcp_connect("127.0.0.1", MPORT))
      c:send(table.concat(junk))
      held[#held + 1] = c
    end
    do -- headers past lws's limit
      local c = assert(sys.tcp_connect("127.0.0.1", MPORT))
      c:send("GET /metrics HTTP/1.1\r\nX-Big: " .. ("a"):rep(20000) .. "\r\n\r\n")
      held[#held + 1] = c
    end
    for _ = 1, 2 do -- asks for /metrics and never reads the answer
      local c = assert(sys.tcp_connect("127.0.0.1", MPORT))
      c:send(request("GET", "/metrics"))
      held[#held + 1] = c
    end
    -- the node goes on: console, peers, and a well-behaved scrape
    local t0 = sys.now()
    assert.equal(2, A:eval("return 1 + 1"))
    assert.is_true(sys.now() - t0 < 3, "the console was slow to answer")
    assert.equal(200, http_get(MPORT, "/metrics").status)
    assert.equal(1, A:eval("return network.get_network_status().peers.total"))
    -- every one of them is cut off within the per-connection deadline (10 s)
    local deadline = sys.now() + 15
    for i, c in ipairs(held) do
      local closed = false
      while not closed and sys.now() < deadline do
        local data, err = c:recv(deadline - sys.now())
        if not data and err ~= "timeout" then closed = true end
        if not data and err == "timeout" then break end
      end
      assert.is_true(closed, "held connection " .. i .. " was not closed")
      c:close()
    end
    assert.equal(2, A:eval("return 1 + 1"))
  end)

  it("refuses connections beyond its cap and serves again once they are gone", function()
    local conns, refused = {}, 0
    for _ = 1, 40 do
      conns[#conns + 1] = assert(sys.tcp_connect("127.0.0.1", MPORT))
    end
    sys.sleep(0.5)
    for _, c in ipairs(conns) do -- refused ones are closed by now; the others time out in 10 s
      local data, err = c:recv(0.01)
      if not data and err ~= "timeout" then refused = refused + 1 end
    end
    assert.is_true(refused >= 8, "only " .. refused .. " of 40 were refused")
    assert.equal(2, A:eval("return 1 + 1"))
    for _, c in ipairs(conns) do c:close() end
    local m = H.wait_for(function()
      local r = http_raw(MPORT, request("GET", "/metrics"), 5)
      return r and r.status == 200 and check_exposition(r.body)
    end, 10, 0.2)
    assert.truthy(m, "no scrape after the flood")
    assert.is_true(metric(m, "bt2c_metrics_refused_total") >= refused)
  end)
end)

describe("metrics configuration", function()
  after_each(function() H.cleanup() end)

  it("port 0 (the default) opens no listener; a port opens exactly one more", function()
    local off = H.start()
    local mport = sys.free_port()
    local on = H.start({ config = { metrics = { port = mport } } })
    local off_ports, on_ports = listening_ports(off.pid), listening_ports(on.pid)
    assert.truthy(contains(off_ports, off.port))
    assert.truthy(contains(on_ports, on.port))
    assert.truthy(contains(on_ports, mport))
    assert.equal(#off_ports + 1, #on_ports)
    assert.is_nil(off:log():find("event=metrics_listening", 1, true))
    local r, err = http_raw(mport, request("GET", "/metrics"))
    assert.truthy(r, err)
    assert.equal(200, r.status)
    -- the default host is the loopback
    assert.truthy(on:wait_log("event=metrics_listening host=127.0.0.1 port=" .. mport, 5))
  end)

  it("a port it cannot listen on is a start failure with a clear log line", function()
    local a_mport = sys.free_port()
    H.start({ config = { metrics = { port = a_mport } } })
    local function fails(config, want)
      local node = H.start({ config = config, wait = false })
      local st = sys.wait(node.pid, 20)
      assert.truthy(st, "the node did not exit")
      node.status = st
      assert.truthy(st.exited and st.code ~= 0, "the node exited with status 0")
      assert.truthy(node:log():find(want, 1, true), "no '" .. want .. "' in:\n" .. node:log())
    end
    -- taken by another node's metrics
    fails({ metrics = { port = a_mport } }, "event=metrics_listen_failed host=127.0.0.1 port=" .. a_mport)
    -- the node's own peer port
    local p = sys.free_port()
    fails({ port = p, metrics = { port = p } }, "metrics.port is the peer port")
    assert.equal(200, http_get(a_mport, "/metrics").status)
  end)
end)
