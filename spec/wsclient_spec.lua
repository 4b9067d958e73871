-- Unit: the client side of RFC 6455: the frames it sends (src/wsframe.c), and
-- (src/wsclient.c) the opening request, the check of the server's 101
-- response, and the bulk frame parser.
local bt2c = require "bt2c"

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
local SUB = "bt2c.v1"
-- RFC 6455 section 1.3
local RFC_KEY, RFC_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

-- base64(SHA-1(key .. GUID)) by an independent tool
local function accept_of(key)
  local p = io.popen("printf '%s' '" .. key .. GUID .. "' | openssl sha1 -binary | base64")
  local out = p:read("l")
  p:close()
  return out
end

-- A response head; `fields` replaces or (with false) removes default headers.
local function response(fields, status)
  local order = { "Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol" }
  local values = { Upgrade = "websocket", Connection = "Upgrade",
    ["Sec-WebSocket-Accept"] = RFC_ACCEPT, ["Sec-WebSocket-Protocol"] = SUB }
  local extra = {}
  for k, v in pairs(fields or {}) do
    if values[k] ~= nil then values[k] = v else extra[#extra + 1] = k .. ": " .. v end
  end
  table.sort(extra)
  local lines = { status or "HTTP/1.1 101 Switching Protocols" }
  for _, k in ipairs(order) do
    if values[k] then lines[#lines + 1] = k .. ": " .. values[k] end
  end
  for _, l in ipairs(extra) do lines[#lines + 1] = l end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function check(resp, key, sub)
  return bt2c.wsc_response_check(key or RFC_KEY, type(resp) == "table" and resp or { resp }, sub or SUB)
end

-- A frame (RFC 6455 5.2): unmasked, or with o.mask the mask bit and a key
-- that is not applied (a server's mistake), or with o.key masked with it
-- (5.3, one byte at a time, as a client sends); o.form forces 7, 16 or 64-bit
-- lengths.
local function frame(op, payload, o)
  o = o or {}
  local n = #payload
  local b0 = (o.fin == false and 0 or 0x80) | ((o.rsv or 0) << 4) | op
  local m = (o.mask or o.key) and 0x80 or 0
  local form = o.form or (n < 126 and 7 or n < 65536 and 16 or 64)
  local h
  if form == 7 then
    h = string.char(b0, m | n)
  elseif form == 16 then
    h = string.char(b0, m | 126) .. string.pack(">I2", n)
  else
    h = string.char(b0, m | 127) .. string.pack(">I8", o.len64 or n)
  end
  if o.mask then h = h .. "\1\2\3\4" end
  if o.key then
    local out = {}
    for i = 1, n do out[i] = string.char(payload:byte(i) ~ o.key:byte((i - 1) % 4 + 1)) end
    return h .. o.key .. table.concat(out)
  end
  return h .. payload
end

local function unhex(h)
  return (h:gsub("%s", ""):gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local function pattern(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 7 + 3) % 256) end
  return table.concat(t)
end

local function datas(events)
  local out = {}
  for _, e in ipairs(events) do
    if e.kind == "data" then out[#out + 1] = e end
  end
  return out
end

local function joined(events)
  local t = {}
  for _, e in ipairs(datas(events)) do t[#t + 1] = e.bytes end
  return table.concat(t)
end

-- One message's pieces: first only on the first, last only on the last, and
-- frame_left counting down to 0 with the bytes delivered.
local function assert_one_message(events, payload, binary)
  local d = datas(events)
  assert.is_true(#d >= 1)
  local got = 0
  for i, e in ipairs(d) do
    assert.equal(i == 1, e.first)
    assert.equal(i == #d, e.last)
    assert.equal(binary, e.binary)
    got = got + #e.bytes
    assert.equal(#payload - got, e.frame_left)
    assert.is_true(e.chunk > 0)
  end
  assert.equal(payload, joined(events))
end

describe("wsframe: the frames the client sends", function()
  it("matches RFC 6455's examples (5.7)", function()
    -- "Hello" masked with 37 fa 21 3d (the RFC's frame is text, 0x81; ours are binary)
    assert.equal(unhex("8285 37fa213d 7f9f4d5158"), bt2c.ws_frame("Hello", unhex("37fa213d")))
    assert.equal(unhex("827e0100"), bt2c.ws_frame(string.rep("a", 256)):sub(1, 4))
    assert.equal(unhex("827f0000000000010000"), bt2c.ws_frame(string.rep("a", 65536)):sub(1, 10))
  end)

  it("masks 8 bytes at a time exactly as byte by byte, at every length and key", function()
    local payload = {}
    for i = 1, 70000 do payload[i] = string.char((i * 131 + 7) % 256) end
    payload = table.concat(payload)
    local keys = { "\0\0\0\0", "\255\255\255\255", unhex("01020304"), unhex("deadbeef") }
    for _, n in ipairs({ 0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 125, 126, 127, 1024, 1031, 65535, 65536, 70000 }) do
      local p = payload:sub(1, n)
      for _, k in ipairs(keys) do
        assert.equal(frame(2, p, { key = k }), bt2c.ws_frame(p, k), "length " .. n)
      end
      assert.equal(frame(2, p), bt2c.ws_frame(p), "unmasked, length " .. n)
    end
  end)
end)

describe("wsclient request", function()
  it("has the request line and every required header", function()
    local req, key = assert(bt2c.wsc_request("127.0.0.1:7001", "/p2p", SUB))
    assert.equal("GET /p2p HTTP/1.1\r\n", req:sub(1, 19))
    assert.equal("\r\n\r\n", req:sub(-4))
    local headers = {}
    for line in req:sub(20, -3):gmatch("(.-)\r\n") do
      local k, v = line:match("^([^:]+): (.*)$")
      assert.is_truthy(k, line)
      headers[k:lower()] = v
    end
    assert.same({
      host = "127.0.0.1:7001",
      upgrade = "websocket",
      connection = "Upgrade",
      ["sec-websocket-key"] = key,
      ["sec-websocket-version"] = "13",
      ["sec-websocket-protocol"] = SUB,
    }, headers)
  end)

  it("makes a fresh 24-character base64 key of 16 bytes each time", function()
    local seen = {}
    for _ = 1, 50 do
      local _, key = assert(bt2c.wsc_request("h", "/", SUB))
      assert.equal(24, #key)
      assert.is_truthy(key:match("^[A-Za-z0-9+/]+[AQgw]==$"), key)
      assert.is_nil(seen[key])
      seen[key] = true
    end
  end)

  it("is accepted with the Sec-WebSocket-Accept computed from its own key", function()
    local _, key = assert(bt2c.wsc_request("h", "/", SUB))
    local resp = response({ ["Sec-WebSocket-Accept"] = accept_of(key) })
    assert.equal(#resp, check(resp, key))
    assert.same({ nil, "wrong Sec-WebSocket-Accept" }, { check(resp, RFC_KEY) })
  end)

  it("refuses an output buffer that is too small, and fields that would split lines", function()
    local req = assert(bt2c.wsc_request("h", "/x", SUB))
    assert.is_nil(bt2c.wsc_request("h", "/x", SUB, #req))
    assert.equal(req:sub(1, 20), (assert(bt2c.wsc_request("h", "/x", SUB, #req + 1))):sub(1, 20))
    assert.is_nil(bt2c.wsc_request("h\r\nX-Evil: 1", "/", SUB))
    assert.is_nil(bt2c.wsc_request("h", "/ HTTP/1.0", SUB))
    assert.is_nil(bt2c.wsc_request("h", "/", "a\nb"))
    assert.is_nil(bt2c.wsc_request("", "/", SUB))
  end)
end)

describe("wsclient response", function()
  it("checks the RFC 6455 section 1.3 example", function()
    assert.equal(RFC_ACCEPT, accept_of(RFC_KEY)) -- the independent tool agrees with the RFC
    local resp = response()
    assert.same({ #resp, 1, #resp }, { check(resp) })
  end)

  it("does not consume the frames that follow the head", function()
    local resp = response()
    local f = frame(2, "abc")
    assert.same({ #resp, 1, #resp }, { check(resp .. f) })
    -- split: the head ends in the second chunk, which also holds the frame
    assert.same({ #resp, 2, #resp - 10 }, { check({ resp:sub(1, 10), resp:sub(11) .. f }) })
    -- the terminator itself split across chunks
    assert.same({ #resp, 2, 2 }, { check({ resp:sub(1, -3), "\r\n" .. f }) })
    assert.same({ #resp, 3, 1 }, { check({ resp:sub(1, -4), "\n\r", "\n" .. f }) })
  end)

  it("accumulates a head fed one byte at a time", function()
    local resp = response()
    local chunks = {}
    for i = 1, #resp do chunks[i] = resp:sub(i, i) end
    chunks[#chunks + 1] = "trailing"
    assert.same({ #resp, #resp, 1 }, { check(chunks) })
    chunks[#chunks] = nil
    chunks[#chunks] = nil
    assert.equal(0, check(chunks)) -- incomplete
  end)

  it("takes header names and the Upgrade/Connection values in any case", function()
    local resp = "HTTP/1.1 101\r\nupgrade:WebSocket\r\nCONNECTION: keep-alive , UPGRADE\r\n" ..
      "sec-websocket-accept:  " .. RFC_ACCEPT .. " \r\nSEC-WEBSOCKET-PROTOCOL: " .. SUB .. "\r\n" ..
      "Server: test\r\n\r\n"
    assert.equal(#resp, check(resp))
    -- Connection may come as several fields
    resp = response({ Connection = "keep-alive", ["connection"] = "Upgrade" })
    assert.equal(#resp, check(resp))
  end)

  local refusals = {
    { "a 403", response(nil, "HTTP/1.1 403 Forbidden"), "status 403, not 101" },
    { "a 200", response(nil, "HTTP/1.1 200 OK"), "status 200, not 101" },
    { "an unusual status", response(nil, "HTTP/1.1 418 I'm a teapot"), "status is not 101" },
    { "HTTP/1.0", response(nil, "HTTP/1.0 101 Switching Protocols"), "status line is not HTTP/1.1" },
    { "a garbled status line", response(nil, "HTTP/1.1 1O1 x"), "malformed status line" },
    { "no status line", "\r\n\r\n", "malformed status line" },
    { "no Upgrade", response({ Upgrade = false }), "no Upgrade: websocket" },
    { "another Upgrade", response({ Upgrade = "h2c" }), "no Upgrade: websocket" },
    { "Upgrade as a list", response({ Upgrade = "websocket, h2c" }), "no Upgrade: websocket" },
    { "no Connection", response({ Connection = false }), "no upgrade token in Connection" },
    { "Connection without upgrade", response({ Connection = "keep-alive" }),
      "no upgrade token in Connection" },
    { "Connection with upgrade inside a token", response({ Connection = "upgraded, x-upgrade" }),
      "no upgrade token in Connection" },
    { "no accept", response({ ["Sec-WebSocket-Accept"] = false }), "no Sec-WebSocket-Accept" },
    { "a wrong accept", response({ ["Sec-WebSocket-Accept"] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOq=" }),
      "wrong Sec-WebSocket-Accept" },
    { "an accept with a wrong last character",
      response({ ["Sec-WebSocket-Accept"] = RFC_ACCEPT:sub(1, -2) .. "A" }),
      "wrong Sec-WebSocket-Accept" },
    { "a truncated accept", response({ ["Sec-WebSocket-Accept"] = RFC_ACCEPT:sub(1, -2) }),
      "wrong Sec-WebSocket-Accept" },
    { "an accept with a suffix", response({ ["Sec-WebSocket-Accept"] = RFC_ACCEPT .. "x" }),
      "wrong Sec-WebSocket-Accept" },
    { "an accept in other case", response({ ["Sec-WebSocket-Accept"] = RFC_ACCEPT:lower() }),
      "wrong Sec-WebSocket-Accept" },
    { "no subprotocol", response({ ["Sec-WebSocket-Protocol"] = false }), "no subprotocol in the response" },
    { "another subprotocol", response({ ["Sec-WebSocket-Protocol"] = "bt2c.v2" }),
      "a subprotocol we did not ask for" },
    { "a subprotocol prefix", response({ ["Sec-WebSocket-Protocol"] = "bt2c" }),
      "a subprotocol we did not ask for" },
    { "a subprotocol list", response({ ["Sec-WebSocket-Protocol"] = SUB .. ", x" }),
      "a subprotocol we did not ask for" },
    { "an extension", response({ ["Sec-WebSocket-Extensions"] = "permessage-deflate" }),
      "Sec-WebSocket-Extensions we did not offer" },
    { "an empty extensions header", response({ ["Sec-WebSocket-Extensions"] = "" }),
      "Sec-WebSocket-Extensions we did not offer" },
    { "a header line without a colon", response({ X = "y" }):gsub("X: y", "X y"), "malformed header line" },
    { "a folded header line", response({ X = "y" }):gsub("X: y", "X: y\r\n z"), "malformed header line" },
    { "a bare LF inside the head", response({ X = "y\nz" }), "malformed header line" },
    { "a header line without a name", response({ X = "y" }):gsub("X: y", ": y"), "malformed header line" },
    { "a space before the colon", response({ X = "y" }):gsub("X: y", "X : y"), "malformed header line" },
    { "a bare CR inside the head", response({ X = "y\rz" }), "malformed header line" },
    { "two accepts", response({ ["sec-websocket-accept"] = RFC_ACCEPT }), "duplicate Sec-WebSocket-Accept" },
  }
  for _, r in ipairs(refusals) do
    it("refuses " .. r[1], function()
      assert.same({ nil, r[3] }, { check(r[2]) })
    end)
  end

  it("accepts a head of exactly WSC_RESPONSE_MAX bytes and refuses a longer one", function()
    local max = bt2c.WSC_RESPONSE_MAX
    assert.equal(4096, max)
    local base = #response({ ["X-Pad"] = "" })
    local exact = response({ ["X-Pad"] = string.rep("p", max - base) })
    assert.equal(max, #exact)
    assert.equal(max, check(exact))
    assert.equal(max, check({ exact:sub(1, 4000), exact:sub(4001) .. "frames" }))
    local long = response({ ["X-Pad"] = string.rep("p", max - base + 1) })
    assert.same({ nil, "response head too long" }, { check(long) })
    -- across feeds, without a terminator in sight
    local chunks = {}
    for i = 1, 5 do chunks[i] = string.rep("x", 1000) end
    chunks[1] = "HTTP/1.1 101 " .. chunks[1]
    assert.same({ nil, "response head too long" }, { check(chunks) })
    assert.equal(0, check({ chunks[1], chunks[2] }))
  end)
end)

describe("wsclient frames", function()
  it("delivers a single binary frame as one piece pointing into the read", function()
    local ev, r = bt2c.wsc_parse({ frame(2, "hello") })
    assert.equal(0, r)
    assert.same({ { kind = "data", bytes = "hello", first = true, binary = true, frame_left = 0,
      last = true, chunk = 1 } }, ev)
    ev = bt2c.wsc_parse({ frame(1, "text") })
    assert.is_false(ev[1].binary)
    assert.equal("text", ev[1].bytes)
  end)

  for _, case in ipairs({ { 125, 2 }, { 126, 4 }, { 65535, 4 }, { 65536, 10 } }) do
    local n, hlen = case[1], case[2]
    it("reads a " .. n .. "-byte payload with a " .. hlen .. "-byte header", function()
      local payload = pattern(n)
      local f = frame(2, payload)
      assert.equal(hlen + n, #f)
      local ev, r = bt2c.wsc_parse({ f })
      assert.equal(0, r)
      assert.equal(1, #ev)
      assert_one_message(ev, payload, true)
    end)
  end

  it("accepts non-minimal length encodings", function()
    for _, form in ipairs({ 16, 64 }) do
      local ev, r = bt2c.wsc_parse({ frame(2, "abc", { form = form }) })
      assert.equal(0, r)
      assert.equal(1, #ev)
      assert_one_message(ev, "abc", true)
    end
  end)

  it("resumes a header split at every byte position", function()
    for _, case in ipairs({ { 7, 5 }, { 16, 300 }, { 64, 70000 } }) do
      local payload = pattern(case[2])
      local f = frame(2, payload, { form = case[1] })
      local hlen = #f - #payload
      for k = 1, hlen do
        local ev, r = bt2c.wsc_parse({ f:sub(1, k), f:sub(k + 1) })
        assert.equal(0, r)
        assert.equal(1, #ev) -- the whole payload is in the second chunk
        assert.equal(2, ev[1].chunk)
        assert_one_message(ev, payload, true)
      end
      -- and a header fed byte by byte, then the payload in one read
      local chunks = {}
      for k = 1, hlen do chunks[k] = f:sub(k, k) end
      chunks[#chunks + 1] = payload
      local ev = bt2c.wsc_parse(chunks)
      assert.equal(1, #ev)
      assert_one_message(ev, payload, true)
    end
  end)

  it("hands over a payload split mid-way in pieces, with frame_left counting down", function()
    local payload = pattern(1000)
    local f = frame(1, payload)
    local ev, r = bt2c.wsc_parse({ f:sub(1, 300), f:sub(301, 700), f:sub(701) })
    assert.equal(0, r)
    assert.equal(3, #ev)
    assert.same({ 296, 400, 304 }, { #ev[1].bytes, #ev[2].bytes, #ev[3].bytes })
    assert.same({ 704, 304, 0 }, { ev[1].frame_left, ev[2].frame_left, ev[3].frame_left })
    assert.same({ 1, 2, 3 }, { ev[1].chunk, ev[2].chunk, ev[3].chunk })
    assert_one_message(ev, payload, false)
  end)

  it("does not process a large read one byte per call", function()
    local payload = pattern(10000)
    local ev = bt2c.wsc_parse({ frame(2, payload) })
    assert.equal(1, #ev)
    assert.equal(10000, #ev[1].bytes)
    assert_one_message(ev, payload, true)
    -- header and part of the payload, then the rest: exactly two pieces
    local f = frame(2, payload)
    ev = bt2c.wsc_parse({ f:sub(1, 5000), f:sub(5001) })
    assert.equal(2, #ev)
    assert_one_message(ev, payload, true)
  end)

  it("still works when fed one byte at a time", function()
    local f = frame(2, "abcdef")
    local chunks = {}
    for i = 1, #f do chunks[i] = f:sub(i, i) end
    local ev = bt2c.wsc_parse(chunks)
    assert.equal(6, #ev)
    assert_one_message(ev, "abcdef", true)
  end)

  it("splits several frames in one read", function()
    local ev, r = bt2c.wsc_parse({ frame(2, "one") .. frame(1, "two") .. frame(0x9, "p") .. frame(2, "") })
    assert.equal(0, r)
    assert.same({
      { kind = "data", bytes = "one", first = true, binary = true, frame_left = 0, last = true, chunk = 1 },
      { kind = "data", bytes = "two", first = true, binary = false, frame_left = 0, last = true, chunk = 1 },
      { kind = "control", opcode = 9, bytes = "p" },
      { kind = "data", bytes = "", first = true, binary = true, frame_left = 0, last = true, chunk = 1 },
    }, ev)
  end)

  it("reports fragments as they come, with control frames between them", function()
    local wire = frame(1, "Hel", { fin = false }) .. frame(0x9, "ping!") ..
      frame(0, "lo ", { fin = false }) .. frame(0xA, "") .. frame(0, "world") .. frame(2, "next")
    local splits = { { wire }, { wire:sub(1, 4), wire:sub(5, 9), wire:sub(10, 15), wire:sub(16) } }
    for _, chunks in ipairs(splits) do
      local ev, r = bt2c.wsc_parse(chunks)
      assert.equal(0, r)
      local kinds, msg = {}, {}
      for i, e in ipairs(ev) do
        kinds[i] = e.kind == "control" and e.opcode or e.kind
        if e.kind == "data" and e.bytes ~= "next" then msg[#msg + 1] = e end
      end
      local controls = {}
      for _, e in ipairs(ev) do
        if e.kind == "control" then controls[#controls + 1] = { e.opcode, e.bytes } end
      end
      assert.same({ { 9, "ping!" }, { 10, "" } }, controls)
      assert.equal("data", kinds[1])
      assert.equal("Hello world", joined(msg))
      assert.is_true(msg[1].first)
      for i = 1, #msg do assert.is_false(msg[i].binary) end
      for i = 2, #msg do assert.is_false(msg[i].first) end
      for i = 1, #msg - 1 do assert.is_false(msg[i].last) end
      assert.is_true(msg[#msg].last)
      local last = ev[#ev]
      assert.same({ "next", true, true, true }, { last.bytes, last.first, last.binary, last.last })
    end
    local ev = bt2c.wsc_parse({ wire })
    local kinds = {}
    for i, e in ipairs(ev) do kinds[i] = e.kind == "control" and e.opcode or e.kind end
    assert.same({ "data", 9, "data", 10, "data", "data" }, kinds)
    assert.same({ "Hel", "lo ", "world" }, { ev[1].bytes, ev[3].bytes, ev[5].bytes })
  end)

  it("ends a message with an empty final continuation frame", function()
    local ev, r = bt2c.wsc_parse({ frame(2, "abc", { fin = false }) .. frame(0, "") })
    assert.equal(0, r)
    assert.same({
      { kind = "data", bytes = "abc", first = true, binary = true, frame_left = 0, last = false, chunk = 1 },
      { kind = "data", bytes = "", first = false, binary = true, frame_left = 0, last = true, chunk = 1 },
    }, ev)
  end)

  it("reports first on an empty first fragment", function()
    local ev = bt2c.wsc_parse({ frame(1, "", { fin = false }), frame(0, "", { fin = false }), frame(0, "x") })
    assert.equal(3, #ev)
    assert.same({ true, false, false }, { ev[1].first, ev[2].first, ev[3].first })
    assert.same({ false, false, true }, { ev[1].last, ev[2].last, ev[3].last })
    assert.same({ 1, 2, 3 }, { ev[1].chunk, ev[2].chunk, ev[3].chunk })
  end)

  it("passes control frames whole: close with code and reason, empty ones, split ones", function()
    local close = string.pack(">I2", 1000) .. "bye"
    local ping = pattern(125)
    local f = frame(0x9, ping)
    local ev, r = bt2c.wsc_parse({ frame(0x8, close) .. frame(0x8, "") .. frame(0x9, "") .. f:sub(1, 40),
      f:sub(41, 90), f:sub(91) })
    assert.equal(0, r)
    assert.same({
      { kind = "control", opcode = 8, bytes = "\3\232bye" },
      { kind = "control", opcode = 8, bytes = "" },
      { kind = "control", opcode = 9, bytes = "" },
      { kind = "control", opcode = 9, bytes = ping },
    }, ev)
  end)

  it("stops when a handler asks to", function()
    local wire = frame(2, "a") .. frame(2, "b") .. frame(2, "c")
    local ev, r = bt2c.wsc_parse({ wire }, 2)
    assert.equal(1, r)
    assert.equal(2, #ev)
    assert.same({ "a", "b" }, { ev[1].bytes, ev[2].bytes })
    ev, r = bt2c.wsc_parse({ frame(0x9, "x") .. frame(2, "y") }, 1)
    assert.equal(1, r)
    assert.same({ { kind = "control", opcode = 9, bytes = "x" } }, ev)
  end)

  local errors = {
    { "RSV1", frame(2, "x", { rsv = 4 }), "reserved bit set" },
    { "RSV2", frame(2, "x", { rsv = 2 }), "reserved bit set" },
    { "RSV3", frame(2, "x", { rsv = 1 }), "reserved bit set" },
    { "a masked frame", frame(2, "x", { mask = true }), "masked frame from the server" },
    { "opcode 0x3", frame(3, "x"), "unknown opcode" },
    { "opcode 0x7", frame(7, "x"), "unknown opcode" },
    { "opcode 0xB", frame(0xB, ""), "unknown opcode" },
    { "opcode 0xF", frame(0xF, ""), "unknown opcode" },
    { "a 126-byte ping", frame(0x9, pattern(126)), "control frame longer than 125 bytes" },
    { "a close with a 16-bit length", frame(0x8, "ab", { form = 16 }),
      "control frame longer than 125 bytes" },
    { "a fragmented ping", frame(0x9, "x", { fin = false }), "fragmented control frame" },
    { "a close with a 1-byte body", frame(0x8, "\3"), "close frame with a 1-byte body" },
    { "a continuation without a message", frame(0, "x"), "continuation without a message" },
    { "a continuation after a complete message", frame(2, "a") .. frame(0, "x"),
      "continuation without a message" },
    { "a text frame inside a message", frame(2, "a", { fin = false }) .. frame(1, "b"),
      "new data frame inside a fragmented message" },
    { "a binary frame inside a message", frame(1, "a", { fin = false }) .. frame(2, "b"),
      "new data frame inside a fragmented message" },
    { "a 64-bit length with its top bit set", frame(2, "", { form = 64, len64 = math.mininteger }),
      "64-bit length with its top bit set" },
  }
  for _, e in ipairs(errors) do
    it("refuses " .. e[1], function()
      local ev, r = bt2c.wsc_parse({ frame(2, "ok") .. e[2] })
      assert.equal(-1, r)
      assert.equal("ok", ev[1].bytes) -- what came before was delivered
      assert.same({ kind = "error", why = e[3] }, ev[#ev])
      -- nothing of the bad frame was delivered
      for i = 2, #ev - 1 do assert.is_true(ev[i].bytes == "a") end
    end)
  end

  it("refuses a bad frame as soon as its first two bytes arrive", function()
    local ev, r = bt2c.wsc_parse({ string.char(0x82, 0x85) })
    assert.equal(-1, r)
    assert.same({ { kind = "error", why = "masked frame from the server" } }, ev)
    ev, r = bt2c.wsc_parse({ string.char(0x82), string.char(0x05 | 0x80) .. "\1\2\3\4" })
    assert.equal(-1, r)
    assert.equal("masked frame from the server", ev[1].why)
  end)
end)
