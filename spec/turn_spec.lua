-- TURN (RFC 8656, RFC 6062) and candidates: the client's codec and the dial
-- order through the test module; real allocations against coturn on
-- loopback (refreshes past a 5 s lifetime, stale nonces, wrong credentials,
-- the TCP relay reaching the WebSocket listener, the UDP relay's Send, Data,
-- ChannelBind and ChannelData); a fake TURN server for what coturn never
-- sends (bad MESSAGE-INTEGRITY, malformed indications); and real NATs built
-- from network namespaces, where nodes behind them are reached through
-- their TCP relays (root only).
local H = require "helpers.node"
local natlab = require "helpers.natlab"
local cjson = require "cjson"
local sys = H.sys

local KEY = sys.stun_longterm_key("bt2c", "bt2c.test", "secret")

local function unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local function find(list, pred)
  for _, v in ipairs(list or {}) do
    if pred(v) then return v end
  end
end

local function by_transport(status, t)
  return find(status.allocations, function(a) return a.transport == t end)
end

-- The WebSocket upgrade a bt2c dialer sends (docs/PROTOCOL.md section 1).
local UPGRADE = table.concat({
  "GET / HTTP/1.1", "Host: relay", "Upgrade: websocket", "Connection: Upgrade",
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
  "Sec-WebSocket-Protocol: bt2c.v1", "", "" }, "\r\n")

-- Reads the 101 response and the first WebSocket frame after it; returns
-- the response head and the frame's payload.
local function read_upgrade_and_frame(conn, timeout)
  local got, deadline = "", sys.now() + (timeout or 5)
  while sys.now() < deadline do
    local head_end = got:find("\r\n\r\n", 1, true)
    if head_end then
      local f = got:sub(head_end + 4)
      if #f >= 2 then
        local len, off = f:byte(2) & 0x7f, 3
        if len == 126 and #f >= 4 then len, off = string.unpack(">I2", f, 3), 5 end
        if len < 126 or off == 5 then
          if #f >= off - 1 + len then return got:sub(1, head_end), f:sub(off, off - 1 + len) end
        end
      end
    end
    local data = conn:recv(0.5)
    if data then got = got .. data end
  end
  return got, nil
end

describe("TURN", function()
  local servers = {}
  after_each(function()
    local ok, err = pcall(H.cleanup) -- coturn goes even when a node's log has a sanitizer report
    for _, s in ipairs(servers) do s.stop() end
    servers = {}
    assert(ok, err)
  end)

  describe("the client's codec", function()
    -- reference/nat-lab.md: a real exchange with coturn 4.6.1, fixed txids
    local resp1 = unhex("011300582112a4420102030405060708090a0b0c0009001000000401556e617574686f72697a" ..
      "6564001500106631626665383936613734303463373200140009627432632e7465737400000080220014436f" ..
      "7475726e2d342e362e312027476f727374278028000401206b4f")
    local req2 = unhex("000300542112a4420d0e0f1011121314151617180019000411000000000600046274326300" ..
      "140009627432632e74657374000000001500106631626665383936613734303463373200080014ce775431db" ..
      "145c65dac893ac22ae81b8c7a17cd8802800045cdb9e38")
    local resp2 = unhex("010300582112a4420d0e0f101112131415161718001600080001e173ea12d543002000080001" ..
      "b047ea12d548000d00040000025880220014436f7475726e2d342e362e312027476f72737427000800146e5a" ..
      "266b3a1a36b2533cbedae05183cd11e014ca802800049ce574e5")

    it("builds the authenticated Allocate of the golden vector byte for byte", function()
      assert.are.equal("bf5b1534d260e1593262de92ee8c7955", (KEY:gsub(".", function(c)
        return ("%02x"):format(c:byte()) end)))
      local bytes = sys.turn_encode{ method = 3, transport = 17, txid = unhex("0d0e0f101112131415161718"),
        auth = { username = "bt2c", realm = "bt2c.test", nonce = "f1bfe896a7404c72", key = KEY } }
      assert.are.equal(req2, bytes)
      -- without credentials: REQUESTED-TRANSPORT and FINGERPRINT only (req1)
      local req1 = sys.turn_encode{ method = 3, transport = 17, txid = unhex("0102030405060708090a0b0c") }
      assert.are.equal(unhex("000300102112a4420102030405060708090a0b0c001900041100000080280004" ..
        "41c778f0"), req1)
    end)

    it("tells a challenge, a success, a stale nonce and wrong credentials apart", function()
      local v, a = sys.turn_classify(resp1)
      assert.are.equal("challenge", v)
      assert.are.same({ 401, "Unauthorized", "bt2c.test", "f1bfe896a7404c72" },
                      { a.code, a.reason, a.realm, a.nonce })
      -- the same 401 to a request that carried credentials: they are wrong
      assert.are.equal("wrong_credentials", (sys.turn_classify(resp1, KEY)))
      assert.are.equal("success", (sys.turn_classify(resp2, KEY)))
      -- a success whose MESSAGE-INTEGRITY does not match (or is missing)
      assert.are.equal("integrity", (sys.turn_classify(resp2, string.rep("k", 16))))
      local unsigned = sys.stun_encode{ method = 3, class = "success", attrs = {
        { type = "XOR-RELAYED-ADDRESS", address = "203.0.113.1", port = 49249 } } }
      assert.are.equal("integrity", (sys.turn_classify(unsigned, KEY)))
      local stale = sys.stun_encode{ method = 4, class = "error", attrs = {
        { type = "ERROR-CODE", code = 438, reason = "Stale nonce\0" },
        { type = "NONCE", value = "eb1b788933367b62" }, { type = "REALM", value = "bt2c.test" } } }
      v, a = sys.turn_classify(stale, KEY)
      assert.are.equal("stale_nonce", v)
      assert.are.same({ 438, "Stale nonce", "eb1b788933367b62" }, { a.code, a.reason, a.nonce })
      local mismatch = sys.stun_encode{ method = 4, class = "error", attrs = {
        { type = "ERROR-CODE", code = 437, reason = "Invalid allocation\0\0" },
        { type = "MESSAGE-INTEGRITY", key = KEY } } }
      v, a = sys.turn_classify(mismatch, KEY)
      assert.are.same({ "error", 437, "Invalid allocation" }, { v, a.code, a.reason })
      -- an error without ERROR-CODE, a 401 without a nonce
      assert.are.equal("malformed", (sys.turn_classify(sys.stun_encode{ method = 3, class = "error" })))
      assert.are.equal("malformed", (sys.turn_classify(sys.stun_encode{ method = 3, class = "error",
        attrs = { { type = "ERROR-CODE", code = 401, reason = "Unauthorized" } } })))
    end)

    it("reads turn: URLs", function()
      assert.are.same({ host = "127.0.0.1", port = 3478, udp = true, tcp = true },
                      sys.turn_parse_url("turn:127.0.0.1"))
      assert.are.same({ host = "turn.example", port = 5000, udp = false, tcp = true },
                      sys.turn_parse_url("turn:turn.example:5000?transport=tcp"))
      assert.are.same({ host = "2001:db8::1", port = 3479, udp = true, tcp = false },
                      sys.turn_parse_url("turn:[2001:db8::1]:3479?transport=udp"))
      for _, bad in ipairs({ "stun:1.2.3.4", "turn:", "turn:h:0", "turn:h:99999", "turn:h?transport=sctp",
                             "turn:[::1", "turns:h:5349" }) do
        assert.is_nil(sys.turn_parse_url(bad), bad)
      end
      assert.truthy(select(2, sys.turn_parse_url("turns:h:5349")):find("not supported", 1, true))
    end)
  end)

  describe("candidates", function()
    local host = { type = "host", address = "10.200.1.2", port = 8765, priority = 2130706431 }
    local srflx = { type = "srflx", address = "203.0.113.10", port = 8765, priority = 1694498815 }
    local relay = { type = "relay", address = "203.0.113.1", port = 49200, priority = 16777215 }
    local urelay = { type = "relay", address = "203.0.113.1", port = 49300, priority = 16776959,
                     transport = "udp" }

    local function types(list)
      local t = {}
      for i, c in ipairs(list) do t[i] = c.type .. (c.transport == "udp" and "/udp" or "") end
      return t
    end

    it("are read with every entry checked and written back the same", function()
      local text = sys.cand_write({ host, srflx, relay, urelay })
      local list, bad = sys.cand_parse(text)
      assert.are.equal(0, bad)
      assert.are.equal(4, #list)
      assert.are.same({ "host", "10.200.1.2", 8765, 2130706431, "tcp" },
                      { list[1].type, list[1].address, list[1].port, list[1].priority, list[1].transport })
      assert.are.equal("udp", list[4].transport)
      assert.are.equal(text, sys.cand_write(list))
      -- malformed entries are skipped and counted, the rest kept
      list, bad = sys.cand_parse(cjson.encode({
        { type = "host", address = "192.0.2.1", port = 1, priority = 0 },          -- fine
        { type = "prflx", address = "192.0.2.1", port = 1, priority = 0 },         -- unknown type
        { type = "host", address = "example.com", port = 1, priority = 0 },        -- not an IP
        { type = "host", address = "0.0.0.0", port = 1, priority = 0 },            -- wildcard
        { type = "host", address = "192.0.2.1", port = 0, priority = 0 },          -- port
        { type = "host", address = "192.0.2.1", port = 2, priority = -1 },         -- priority
        { type = "host", address = "192.0.2.1", port = 3, priority = 1, transport = "sctp" },
        { type = "relay", address = "::ffff:192.0.2.9", port = 4, priority = 1 },  -- v4-mapped: v4
        "not an object",
      }))
      assert.are.equal(7, bad)
      assert.are.equal(2, #list)
      assert.are.equal("192.0.2.9", list[2].address)
      assert.is_nil(sys.cand_parse('{"type":"host"}'))
      assert.is_nil(sys.cand_parse("[" .. string.rep("1,", 32) .. "1]")) -- more than 32
    end)

    it("are ordered host, srflx, relay by priority, and candidatePreference picks the first", function()
      local mixed = { relay, urelay, srflx, host }
      local function order(method, pref) return types(sys.cand_sort(mixed, method, pref)) end
      assert.are.same({ "host", "srflx", "relay", "relay/udp" }, order("stun", "priority"))
      assert.are.same({ "host", "srflx", "relay", "relay/udp" }, order("host", "host"))
      assert.are.same({ "srflx", "host", "relay", "relay/udp" }, order("stun", "srflx"))
      assert.are.same({ "relay", "relay/udp", "host", "srflx" }, order("stun", "relay"))
      -- preferredMethod "turn" puts relays right after the candidatePreference type
      assert.are.same({ "srflx", "relay", "relay/udp", "host" }, order("turn", "srflx"))
      assert.are.same({ "relay", "relay/udp", "host", "srflx" }, order("turn", "priority"))
      assert.are.same({ "host", "srflx", "relay", "relay/udp" }, order("host", "priority"))
    end)

    it("give the URLs a dialer tries, in its order, with the address it was known by", function()
      local entry = "ws://203.0.113.10:8765" -- what a bootstrap node saw: the srflx one
      assert.are.same({ "ws://203.0.113.10:8765", "ws://10.200.1.2:8765", "ws://203.0.113.1:49200" },
                      sys.cand_dial_urls({ relay, urelay, host, srflx }, entry, "stun", "srflx"))
      assert.are.same({ "ws://203.0.113.1:49200", "ws://10.200.1.2:8765", "ws://203.0.113.10:8765" },
                      sys.cand_dial_urls({ host, srflx, relay }, entry, "stun", "relay"))
      assert.are.same({ "ws://10.200.1.2:8765", "ws://203.0.113.10:8765", "ws://203.0.113.1:49200" },
                      sys.cand_dial_urls({ host, srflx, relay }, entry, "host", "host"))
      -- an address that is none of the candidates ranks as the last srflx
      assert.are.same({ "ws://10.200.1.2:8765", "ws://198.51.100.7:8765", "ws://203.0.113.1:49200" },
                      sys.cand_dial_urls({ host, relay }, "ws://198.51.100.7:8765", "stun", "priority"))
      local v6 = { type = "host", address = "2001:db8::5", port = 443, priority = 9 }
      assert.are.same({ "wss://[2001:db8::5]:443" }, sys.cand_dial_urls({ v6 }, nil, "stun", "srflx", true))
    end)

    it("go into the peer store so that what worked stays first and a failure moves on", function()
      local learned = { "ws://203.0.113.10:8765", "ws://10.200.1.2:8765", "ws://203.0.113.1:49200" }
      -- never connected: the learned order
      local addrs, changed = sys.cand_merge_urls({ addrs = { "ws://203.0.113.10:8765" } }, learned)
      assert.is_true(changed)
      assert.are.same(learned, addrs)
      -- the relay worked last time: it stays first
      addrs = sys.cand_merge_urls({ addrs = { "ws://203.0.113.1:49200", "ws://203.0.113.10:8765" },
                                    lastConnected = 1764000000, failures = 0 }, learned)
      assert.are.same({ "ws://203.0.113.1:49200", "ws://203.0.113.10:8765", "ws://10.200.1.2:8765" }, addrs)
      -- it has failed since: the learned order again
      addrs = sys.cand_merge_urls({ addrs = { "ws://203.0.113.1:49200" }, lastConnected = 1764000000,
                                    failures = 1 }, learned)
      assert.are.same(learned, addrs)
      -- nothing new: unchanged; at most 4 addresses
      local _, changed_again = sys.cand_merge_urls({ addrs = learned }, learned)
      assert.is_false(changed_again)
      addrs = sys.cand_merge_urls({ addrs = { "ws://a:1", "ws://b:2" } }, learned)
      assert.are.same({ learned[1], learned[2], learned[3], "ws://a:1" }, addrs)
    end)
  end)

  describe("against coturn on loopback", function()
    local function turn_server(srv, password, query)
      return { urls = "turn:127.0.0.1:" .. srv.port .. (query or ""), username = "bt2c",
               credential = password or "secret" }
    end

    it("keeps UDP and TCP allocations past a 5 s lifetime through stale nonces; both relays work", function()
      if not natlab.have_coturn then return pending("coturn (turnserver) is not installed") end
      local srv = natlab.coturn{ extra = { "--max-allocate-lifetime=5", "--stale-nonce=2" } }
      servers[#servers + 1] = srv
      local dead = sys.udp_free_port() -- a STUN server that never answers
      local a = H.start{ config = { natTraversal = { stunServers = { "stun:127.0.0.1:" .. dead },
        stunRto = 50, stunRetransmissions = 2, turnServers = { turn_server(srv) } } } }
      local st = H.wait_for(function()
        local s = a:eval("return nat.turn_status()")
        return #s.allocations == 2 and s.allocations[1].state == "allocated" and
          s.allocations[2].state == "allocated" and s
      end, 10)
      assert.is_table(st, "no allocations:\n" .. a:log() .. srv.log())
      local udp, tcp = by_transport(st, "udp"), by_transport(st, "tcp")
      assert.are.equal(5, udp.lifetime) -- coturn clamps to --max-allocate-lifetime
      assert.are.equal("127.0.0.1", tcp.relayedAddress.address)
      assert.are.equal("bt2c.test", tcp.realm)
      assert.are.equal(a.port, udp.mappedAddress.port) -- the node's own UDP socket

      -- STUN fails: TURN is what peers are told
      assert.truthy(a:wait_log("event=stun_failed", 5))
      local ext = a:eval("return nat.get_external_address()")
      assert.are.same({ "turn", "127.0.0.1", tcp.relayedAddress.port, "turn:127.0.0.1:" .. srv.port },
                      { ext.method, ext.address, ext.port, ext.server })
      local cands = a:eval("return nat.get_candidates()")
      assert.is_nil(find(cands, function(c) return c.type == "srflx" end))
      local tr = find(cands, function(c) return c.type == "relay" and c.transport == "tcp" end)
      assert.are.equal(tcp.relayedAddress.port, tr.port)
      assert.are.equal(0, tr.priority >> 24) -- RFC 8445 type preference 0
      assert.truthy(find(cands, function(c) return c.type == "relay" and c.transport == "udp" end))

      -- a node connects: its IP gets permissions on both relays
      H.start{ config = { bootstrapPeers = { "ws://127.0.0.1:" .. a.port } } }
      assert.truthy(H.wait_for(function()
        local s = a:eval("return nat.turn_status()")
        for _, al in ipairs(s.allocations) do
          local p = find(al.permissions, function(x) return x.address == "127.0.0.1" end)
          if not (p and p.state == "installed") then return false end
        end
        return true
      end, 5), "no permissions:\n" .. a:log())

      -- past two lifetimes: refreshed, not re-allocated, nonces renewed
      sys.sleep(12 - udp.allocatedFor)
      st = a:eval("return nat.turn_status()")
      for _, al in ipairs(st.allocations) do
        assert.are.equal("allocated", al.state)
        assert.are.equal(1, al.allocations)
        assert.is_true(al.refreshes >= 3, al.transport .. " refreshes " .. al.refreshes)
        assert.is_true(al.allocatedFor >= 11.9 and al.lifetimeLeft > 0)
      end
      assert.is_true(st.staleNonces >= 2, "stale nonces " .. st.staleNonces)
      assert.are.equal(0, st.authFailures)
      assert.are.equal(0, st.malformed)

      -- the TCP relay: a connection to the relayed address reaches the
      -- WebSocket listener, and the node's HELLO advertises its relays
      local conn = assert(sys.tcp_connect("127.0.0.1", tcp.relayedAddress.port))
      assert(conn:send(UPGRADE))
      local head, frame = read_upgrade_and_frame(conn)
      conn:close()
      assert.truthy(head:find("^HTTP/1.1 101"), head .. "\n" .. a:log())
      assert.truthy(head:lower():find("sec%-websocket%-protocol: bt2c.v1"))
      assert.is_string(frame, "no HELLO after the upgrade")
      local env = assert(sys.env_decode_batch(frame))[1]
      assert.are.equal(1, env.type)
      local hello = cjson.decode(env.payload)
      assert.are.equal("hello", hello.step)
      local adv = find(hello.candidates, function(c) return c.type == "relay" and c.transport == "tcp" end)
      assert.are.same({ "127.0.0.1", tcp.relayedAddress.port }, { adv.address, adv.port })
      assert.truthy(find(hello.candidates, function(c) return c.type == "host" and c.port == a.port end))
      assert.truthy(a:wait_log(("event=turn_connection server=turn:127.0.0.1:%d relayed=127.0.0.1:%d " ..
        "peer=127.0.0.1:"):format(srv.port, tcp.relayedAddress.port)), a:log())

      -- the UDP relay: Data indication in, Send out, ChannelBind, ChannelData both ways
      local u = assert(sys.udp_socket("127.0.0.1", 0))
      local relay_port = udp.relayedAddress.port
      assert(u:sendto("hello relay", "127.0.0.1", relay_port))
      local got = H.wait_for(function()
        local al = by_transport(a:eval("return nat.turn_status()"), "udp")
        return al.dataIn >= 1 and al
      end, 5)
      assert.is_table(got, "no Data indication")
      assert.are.same({ "hello relay", "127.0.0.1:" .. u:port() }, { got.lastData, got.lastFrom })
      local r = a:eval(("return { nat.turn_send('127.0.0.1', %d, 'pong 1') }"):format(u:port()))
      assert.are.same({ true }, r)
      local data, ip, port = u:recvfrom(2)
      assert.are.same({ "pong 1", "127.0.0.1", relay_port }, { data, ip, port })
      assert.truthy(H.wait_for(function()
        local al = by_transport(a:eval("return nat.turn_status()"), "udp")
        return al.channels[1] and al.channels[1].state == "bound"
      end, 5))
      a:eval(("return nat.turn_send('127.0.0.1', %d, 'pong 2')"):format(u:port()))
      data, ip, port = u:recvfrom(2) -- now as ChannelData through channel 0x4000
      assert.are.same({ "pong 2", "127.0.0.1", relay_port }, { data, ip, port })
      assert(u:sendto("via the channel", "127.0.0.1", relay_port))
      got = H.wait_for(function()
        local al = by_transport(a:eval("return nat.turn_status()"), "udp")
        return al.channelDataIn >= 1 and al
      end, 5)
      assert.is_table(got, "no ChannelData")
      assert.are.equal("via the channel", got.lastData)
      assert.are.equal(0x4000, got.channels[1].number)
      u:close()
    end)

    it("reports wrong credentials as such, once, and carries on with the host candidate", function()
      if not natlab.have_coturn then return pending("coturn (turnserver) is not installed") end
      local srv = natlab.coturn()
      servers[#servers + 1] = srv
      local dead = sys.udp_free_port()
      local a = H.start{ config = { natTraversal = { stunServers = { "stun:127.0.0.1:" .. dead },
        stunRto = 50, stunRetransmissions = 2, turnServers = { turn_server(srv, "wrong") } } } }
      local st = H.wait_for(function()
        local s = a:eval("return nat.turn_status()")
        return s.allocations[1].state == "auth_failed" and s.allocations[2].state == "auth_failed" and s
      end, 10)
      assert.is_table(st, "no auth failure:\n" .. a:log())
      for _, al in ipairs(st.allocations) do
        assert.are.equal(401, al.lastError.code)
        assert.truthy(al.lastError.reason:find("^wrong credentials: the server answered 401"),
                      al.lastError.reason)
        assert.truthy(al.lastError.reason:find('username "bt2c" in realm "bt2c.test"', 1, true))
        assert.truthy(al.lastError.reason:find("natTraversal.turnServers[1]", 1, true))
      end
      assert.truthy(a:wait_log("event=stun_failed", 5))
      sys.sleep(0.5) -- nothing more is tried: one challenge, one refusal per allocation
      st = a:eval("return nat.turn_status()")
      assert.are.same({ 2, 2, 4 }, { st.authFailures, st.challenges, st.requests })
      assert.are.equal(2, a:count_log("level=error event=turn_auth_failed"))
      -- STUN and TURN both failed: peers are told the host address only
      local cands = a:eval("return nat.get_candidates()")
      assert.are.same({ "host" }, { cands[1].type, cands[2] })
      assert.are.equal("host", a:eval("return nat.get_external_address()").method)
      -- and the node works: another connects to it
      local b = H.start{ config = { bootstrapPeers = { "ws://127.0.0.1:" .. a.port } } }
      assert.truthy(H.wait_for(function()
        return #b:eval("return network.get_peers()") == 1
      end, 5))
    end)
    it("takes over its UDP 5-tuple after a restart on the same port (437, delete, allocate)", function()
      if not natlab.have_coturn then return pending("coturn (turnserver) is not installed") end
      local srv = natlab.coturn()
      servers[#servers + 1] = srv
      local config = { port = sys.free_port(), natTraversal = { stunServers = {},
        turnServers = { turn_server(srv, nil, "?transport=udp") } } }
      local first = H.start{ config = config }
      assert.truthy(first:wait_log("event=turn_allocated"))
      first.status = first:kill("KILL") -- its allocation stays on the server
      local again = H.start{ config = config }
      local al = H.wait_for(function()
        local x = again:eval("return nat.turn_status()").allocations[1]
        return x.state == "allocated" and x
      end, 8)
      assert.is_table(al, again:log() .. srv.log())
      assert.are.equal(1, al.allocations)
      assert.is_nil(again:log():find("event=turn_failed", 1, true))
    end)
  end)

  -- The test plays the TURN server on a UDP socket, for what coturn never
  -- sends: a success with a wrong MESSAGE-INTEGRITY, malformed indications,
  -- ChannelData on a channel nobody bound, a 438 then a 401 to credentials.
  describe("against a fake TURN server", function()
    it("answers the challenge, drops and counts what is malformed, and stops at a second 401", function()
      local srv = assert(sys.udp_socket("127.0.0.1", 0))
      local a = H.start{ config = { natTraversal = { stunServers = {}, stunRto = 100,
        turnServers = { { urls = "turn:127.0.0.1:" .. srv:port() .. "?transport=udp",
                          username = "bt2c", credential = "secret" } } } } }
      -- receives the next request of `method`, skipping retransmissions of `skip`
      local function next_request(method, skip)
        local deadline = sys.now() + 5
        while sys.now() < deadline do
          local bytes, ip, port = srv:recvfrom(1)
          if bytes then
            local d = sys.stun_decode(bytes)
            if d and d.class == "request" and d.method == method and d.txid ~= skip then
              return d, bytes, ip, port
            end
          end
        end
        error("no request " .. method .. "\n" .. a:log())
      end
      local function status() return a:eval("return nat.turn_status()") end

      local d, bytes, ip, port
      d, bytes, ip, port = next_request(3)
      assert.is_nil(sys.stun_check_integrity(bytes, KEY)) -- no MESSAGE-INTEGRITY at all
      assert.are.equal("\17\0\0\0", d.byName["REQUESTED-TRANSPORT"].value)
      assert.is_nil(d.byName.USERNAME)
      assert.is_nil(d.byName["MESSAGE-INTEGRITY"])
      assert(srv:sendto(sys.stun_encode{ method = 3, class = "error", txid = d.txid, attrs = {
        { type = "ERROR-CODE", code = 401, reason = "Unauthorized" },
        { type = "REALM", value = "bt2c.test" }, { type = "NONCE", value = "nonce-one" } } }, ip, port))
      d, bytes = next_request(3, d.txid)
      assert.are.same({ "bt2c", "bt2c.test", "nonce-one" },
                      { d.byName.USERNAME.value, d.byName.REALM.value, d.byName.NONCE.value })
      assert.is_true(sys.stun_check_integrity(bytes, KEY))
      assert.are.equal("FINGERPRINT", d.attrs[#d.attrs].name)

      local function success(txid, key, lifetime)
        return sys.stun_encode{ method = 3, class = "success", txid = txid, attrs = {
          { type = "XOR-RELAYED-ADDRESS", address = "127.0.0.1", port = 50001 },
          { type = "XOR-MAPPED-ADDRESS", address = "127.0.0.1", port = a.port },
          { type = "LIFETIME", u32 = lifetime }, { type = "MESSAGE-INTEGRITY", key = key } } }
      end
      -- signed with another key: dropped and counted; the real one is taken
      assert(srv:sendto(success(d.txid, string.rep("x", 16), 2), ip, port))
      assert.truthy(H.wait_for(function() return status().malformed == 1 end, 3))
      assert.are.equal("allocating", status().allocations[1].state)
      assert(srv:sendto(success(d.txid, KEY, 2), ip, port))
      local al = H.wait_for(function()
        local s = status().allocations[1]
        return s.state == "allocated" and s
      end, 3)
      assert.is_table(al, a:log())
      assert.are.same({ "127.0.0.1", 50001, 2 },
                      { al.relayedAddress.address, al.relayedAddress.port, al.lifetime })

      -- malformed from the server: a Data indication without DATA, ChannelData
      -- on a channel this node never bound; from elsewhere: ChannelData
      assert(srv:sendto(sys.stun_encode{ method = 7, class = "indication", attrs = {
        { type = "XOR-PEER-ADDRESS", address = "127.0.0.1", port = 9 } } }, ip, port))
      assert(srv:sendto(sys.stun_channel_encode(0x4001, "nobody bound me"), ip, port))
      local other = assert(sys.udp_socket("127.0.0.1", 0))
      assert(other:sendto(sys.stun_channel_encode(0x4000, "not from the server"), ip, port))
      other:close()
      -- a good Data indication is taken
      assert(srv:sendto(sys.stun_encode{ method = 7, class = "indication", attrs = {
        { type = "XOR-PEER-ADDRESS", address = "127.0.0.1", port = 9 },
        { type = "DATA", value = "fine" } } }, ip, port))
      assert.truthy(H.wait_for(function()
        local s = status()
        return s.allocations[1].dataIn == 1 and s
      end, 3))
      local s = status()
      assert.are.equal(3, s.malformed) -- bad M-I, Data without DATA, unknown channel
      assert.are.equal("fine", s.allocations[1].lastData)
      local ns = a:eval("return nat.stats()")
      assert.are.equal(2, ns.malformed) -- the two ChannelData datagrams
      assert.truthy(a:log():find('reason="ChannelData on a channel this node did not bind"', 1, true))
      assert.truthy(a:log():find('reason="ChannelData from an address that is not one of our TURN servers"',
                                 1, true))

      -- the Refresh (lifetime 2: after 1 s) meets a stale nonce, then a 401:
      -- the credentials are wrong, and the client says so instead of looping
      d = next_request(4)
      assert.are.equal("nonce-one", d.byName.NONCE.value)
      assert(srv:sendto(sys.stun_encode{ method = 4, class = "error", txid = d.txid, attrs = {
        { type = "ERROR-CODE", code = 438, reason = "Stale nonce\0" },
        { type = "REALM", value = "bt2c.test" }, { type = "NONCE", value = "nonce-two" } } }, ip, port))
      d, bytes = next_request(4, d.txid)
      assert.are.equal("nonce-two", d.byName.NONCE.value)
      assert.is_true(sys.stun_check_integrity(bytes, KEY))
      assert(srv:sendto(sys.stun_encode{ method = 4, class = "error", txid = d.txid, attrs = {
        { type = "ERROR-CODE", code = 401, reason = "Unauthorized" },
        { type = "REALM", value = "bt2c.test" }, { type = "NONCE", value = "nonce-three" } } }, ip, port))
      al = H.wait_for(function()
        local x = status().allocations[1]
        return x.state == "auth_failed" and x
      end, 3)
      assert.is_table(al, a:log())
      assert.are.equal(401, al.lastError.code)
      s = status()
      assert.are.same({ 1, 1 }, { s.staleNonces, s.authFailures })
      assert.is_nil(srv:recvfrom(0.5)) -- no more requests
      assert.are.same({ "host" }, { a:eval("return nat.get_candidates()")[1].type,
                                   a:eval("return nat.get_candidates()")[2] })
      srv:close()
    end)
  end)

  -- Real NATs (helpers/natlab.lua, root only): pub 203.0.113.1 (coturn on
  -- 3478, and public nodes), hostA 10.200.1.2 behind natA 203.0.113.10,
  -- hostB 10.200.2.2 behind natB 203.0.113.20; both NATs drop what is not a
  -- reply, so nothing reaches hostA or hostB unless they open it or TURN.
  describe("behind NATs (network namespaces)", function()
    local lab
    after_each(function()
      local ok, err = pcall(H.cleanup)
      if lab then lab.down() end -- the namespaces go whatever happened
      lab = nil
      assert(ok, err)
    end)

    local TURN_TCP = { urls = "turn:203.0.113.1:3478?transport=tcp", username = natlab.USER,
                       credential = natlab.PASSWORD }

    local function node_id(n)
      return n:eval("return network.get_network_status()").nodeId
    end

    local function peer_of(n, id)
      return find(n:eval("return network.get_peers()"), function(p)
        return p.id == id and p.state == "established"
      end)
    end

    -- A NATed node with a TCP relay, connected to the bootstrap node.
    local function start_relayed(where, boot_url, extra)
      -- one outbound slot, the bootstrap node's: the others must come to it
      local config = { bootstrapPeers = { boot_url }, connectionTimeout = 3000, maxOutbound = 1,
        natTraversal = { stunServers = { "stun:203.0.113.1:3478" }, turnServers = { TURN_TCP } } }
      for k, v in pairs(extra or {}) do config[k] = v end
      local n = lab.start(where, { config = config })
      local st = H.wait_for(function()
        local s = n:eval("return nat.turn_status()").allocations[1]
        return s.state == "allocated" and s
      end, 10)
      assert.is_table(st, "no TCP allocation:\n" .. n:log() .. lab.coturn_log())
      return n, st
    end

    -- n drops its connection to the bootstrap node and dials it again: the
    -- new connection starts with a peer exchange (section 5), so n learns
    -- at once who joined meanwhile and their candidates.
    local function reconnect(n, boot_id)
      n:eval(("network.disconnect(%q) return true"):format(boot_id))
      assert.truthy(H.wait_for(function() return peer_of(n, boot_id) end, 10), "no reconnect:\n" .. n:log())
    end

    it("learns the NAT's public address and is reached through its TCP relay by a public node", function()
      local ok, why = natlab.usable()
      if not ok then return pending(why) end
      lab = natlab.up{ nats = { "cone" } }
      local boot = lab.start("pub")
      local boot_url, boot_id = "ws://203.0.113.1:" .. boot.port, node_id(boot)
      local p = lab.start("pub", { config = { bootstrapPeers = { boot_url }, connectionTimeout = 3000 } })
      assert.truthy(H.wait_for(function() return peer_of(p, boot_id) end, 10))

      local a, relay = start_relayed("hostA", boot_url)
      local ext = H.wait_for(function()
        local e = a:eval("return nat.get_external_address()")
        return e.method == "stun" and e
      end, 10)
      assert.are.equal("203.0.113.10", ext.address) -- natA's address, not 10.200.1.2
      assert.are.equal("203.0.113.1", relay.relayedAddress.address)
      assert.are.equal("203.0.113.10", relay.mappedAddress.address)
      assert.truthy(H.wait_for(function() return peer_of(a, boot_id) end, 10))
      -- p's address (pub) is permitted: a learned it from the bootstrap node
      assert.truthy(H.wait_for(function()
        local al = a:eval("return nat.turn_status()").allocations[1]
        local pm = find(al.permissions, function(x) return x.address == "203.0.113.1" end)
        return pm and pm.state == "installed"
      end, 10), "no permission:\n" .. a:log())

      reconnect(p, boot_id)
      -- p tries a's candidates in its order (srflx, host, relay): the first
      -- two cannot work through natA, the relay does
      local a_id = node_id(a)
      local relay_url = ("ws://203.0.113.1:%d"):format(relay.relayedAddress.port)
      local via = H.wait_for(function() return peer_of(p, a_id) end, 30)
      assert.is_table(via, "p never reached a:\n" .. p:log() .. "\n" .. a:log())
      assert.are.equal(relay_url, via.url)
      assert.are.equal("outbound", via.direction)
      local back = peer_of(a, node_id(p))
      assert.are.equal("inbound", back.direction)
      assert.truthy(back.remote:find("^203%.0%.113%.1:%d+$"))
      assert.are_not.equal("203.0.113.1:3478", back.remote) -- the peer, not the TURN server
      assert.truthy(p:log():find("event=dial_failed url=ws://203.0.113.10:" .. a.port, 1, true), p:log())
      assert.truthy(a:wait_log('event=turn_connection server="turn:203.0.113.1:3478?transport=tcp"'))
    end)

    it("lets two nodes behind different NATs exchange messages through TURN", function()
      local ok, why = natlab.usable()
      if not ok then return pending(why) end
      lab = natlab.up{ nats = { "cone", "symmetric" } }
      local boot = lab.start("pub")
      local boot_url, boot_id = "ws://203.0.113.1:" .. boot.port, node_id(boot)
      -- b (behind the symmetric NAT) prefers relays when it dials
      local b = lab.start("hostB", { config = { bootstrapPeers = { boot_url }, connectionTimeout = 3000,
        natTraversal = { stunServers = { "stun:203.0.113.1:3478" }, turnServers = {},
                         candidatePreference = "relay" } } })
      assert.truthy(H.wait_for(function() return peer_of(b, boot_id) end, 10))
      local a, relay = start_relayed("hostA", boot_url)
      assert.truthy(H.wait_for(function() return peer_of(a, boot_id) end, 10))
      -- natB's public IP is permitted on a's relay
      assert.truthy(H.wait_for(function()
        local al = a:eval("return nat.turn_status()").allocations[1]
        local pm = find(al.permissions, function(x) return x.address == "203.0.113.20" end)
        return pm and pm.state == "installed"
      end, 10), "no permission for natB:\n" .. a:log())

      reconnect(b, boot_id)
      local a_id, b_id = node_id(a), node_id(b)
      local via = H.wait_for(function() return peer_of(b, a_id) end, 20)
      assert.is_table(via, "b never reached a:\n" .. b:log() .. "\n" .. a:log())
      assert.are.equal(("ws://203.0.113.1:%d"):format(relay.relayedAddress.port), via.url)
      local back = peer_of(a, b_id)
      assert.truthy(back.remote:find("^203%.0%.113%.20:%d+$"), back.remote) -- natB, as coturn saw it

      for _, n in ipairs({ a, b }) do
        assert.is_true(n:eval([[got = {}
          network.on("message:network_status", function(id, m)
            got[#got + 1] = { from = id, data = m.data }
          end)
          return true]]))
      end
      a:eval(("return network.send_message(%q, { type = 'network_status', data = { hello = 'from a' } })")
        :format(b_id))
      b:eval(("return network.send_message(%q, { type = 'network_status', data = { hello = 'from b' } })")
        :format(a_id))
      local at_b = H.wait_for(function() local g = b:eval("return got") return g[1] and g end, 5)
      local at_a = H.wait_for(function() local g = a:eval("return got") return g[1] and g end, 5)
      assert.are.same({ a_id, "from a" }, { at_b[1].from, at_b[1].data.hello })
      assert.are.same({ b_id, "from b" }, { at_a[1].from, at_a[1].data.hello })
    end)
  end)
end)
