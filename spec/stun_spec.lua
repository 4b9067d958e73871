-- The STUN/TURN codec (src/stun.c) against the golden vectors of a real
-- coturn 4.6.1 exchange (reference/nat-lab.md §5), hand-built messages and
-- malformed input. No network.
local bt2c = require "bt2c"

local function unhex(h)
  h = h:gsub("%s", "")
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Golden vectors: hostA -> coturn in the namespace lab, fixed txids.
local V = {
  req1 = "000300102112a4420102030405060708090a0b0c00190004110000008028000441c778f0",
  resp1 = "011300582112a4420102030405060708090a0b0c0009001000000401556e617574686f72697a656400"
    .. "1500106631626665383936613734303463373200140009627432632e7465737400000080220014436f"
    .. "7475726e2d342e362e312027476f727374278028000401206b4f",
  key = "bf5b1534d260e1593262de92ee8c7955",
  req2 = "000300542112a4420d0e0f1011121314151617180019000411000000000600046274326300140009"
    .. "627432632e74657374000000001500106631626665383936613734303463373200080014ce775431"
    .. "db145c65dac893ac22ae81b8c7a17cd8802800045cdb9e38",
  resp2 = "010300582112a4420d0e0f101112131415161718001600080001e173ea12d543002000080001b047"
    .. "ea12d548000d00040000025880220014436f7475726e2d342e362e312027476f7273742700080014"
    .. "6e5a266b3a1a36b2533cbedae05183cd11e014ca802800049ce574e5",
}

local TXID = "\1\2\3\4\5\6\7\8\9\10\11\12"

-- A header with any type, cookie and length, then the body as given.
local function raw(type_, body, opts)
  opts = opts or {}
  return string.pack(">I2I2I4", type_, opts.len or #body, opts.cookie or 0x2112A442)
    .. (opts.txid or TXID) .. body
end

local function attr(t, v)
  return string.pack(">I2I2", t, #v) .. v .. string.rep("\0", (4 - #v % 4) % 4)
end

describe("STUN golden vectors (coturn 4.6.1)", function()
  local key = unhex(V.key)

  it("derives the long-term key MD5(user:realm:pass)", function()
    assert.are.equal(V.key, hex(bt2c.stun_longterm_key("bt2c", "bt2c.test", "secret")))
  end)

  it("rebuilds req1 (Allocate, REQUESTED-TRANSPORT, FINGERPRINT) byte for byte", function()
    local m = bt2c.stun_encode{ method = 0x003, class = "request", txid = unhex("0102030405060708090a0b0c"),
      attrs = { { type = "REQUESTED-TRANSPORT", value = "\17\0\0\0" }, { type = "FINGERPRINT" } } }
    assert.are.equal(V.req1, hex(m))
  end)

  it("rebuilds req2 from txid, user, realm, nonce and key byte for byte", function()
    local m = bt2c.stun_encode{ method = 0x003, class = "request", txid = unhex("0d0e0f101112131415161718"),
      attrs = {
        { type = "REQUESTED-TRANSPORT", value = "\17\0\0\0" },
        { type = "USERNAME", value = "bt2c" },
        { type = "REALM", value = "bt2c.test" },
        { type = "NONCE", value = "f1bfe896a7404c72" },
        { type = "MESSAGE-INTEGRITY", key = key },
        { type = "FINGERPRINT" },
      } }
    assert.are.equal(V.req2, hex(m))
    assert.is_true(bt2c.stun_check_integrity(m, key))
  end)

  it("reads resp1: 401 with REALM, NONCE, a valid FINGERPRINT and no M-I", function()
    local bytes = unhex(V.resp1)
    local d = assert(bt2c.stun_decode(bytes))
    assert.are.equal(0x113, d.type)
    assert.are.equal(0x003, d.method)
    assert.are.equal("error", d.class)
    assert.are.equal(401, d.byName["ERROR-CODE"].code)
    assert.are.equal("Unauthorized", d.byName["ERROR-CODE"].reason)
    assert.are.equal("bt2c.test", d.byName.REALM.value)
    assert.are.equal("f1bfe896a7404c72", d.byName.NONCE.value)
    assert.is_true(d.fingerprint)
    assert.is_false(d.integrity)
    assert.is_nil(bt2c.stun_check_integrity(bytes, key))
  end)

  it("reads resp2: relayed 203.0.113.1:49249, mapped 203.0.113.10:37205, M-I and FINGERPRINT ok", function()
    local bytes = unhex(V.resp2)
    local d = assert(bt2c.stun_decode(bytes))
    assert.are.equal("success", d.class)
    assert.are.equal("Allocate", d.methodName)
    local names = {}
    for i, a in ipairs(d.attrs) do names[i] = a.name end
    assert.are.same({ "XOR-RELAYED-ADDRESS", "XOR-MAPPED-ADDRESS", "LIFETIME", "SOFTWARE",
                      "MESSAGE-INTEGRITY", "FINGERPRINT" }, names)
    assert.are.equal("203.0.113.1", d.byName["XOR-RELAYED-ADDRESS"].address)
    assert.are.equal(49249, d.byName["XOR-RELAYED-ADDRESS"].port)
    assert.are.equal("203.0.113.10", d.byName["XOR-MAPPED-ADDRESS"].address)
    assert.are.equal(37205, d.byName["XOR-MAPPED-ADDRESS"].port)
    assert.are.equal(600, d.byName.LIFETIME.u32)
    assert.is_true(d.fingerprint)
    assert.is_true(bt2c.stun_check_integrity(bytes, key))
    assert.is_false(bt2c.stun_check_integrity(bytes, bt2c.stun_longterm_key("bt2c", "bt2c.test", "wrong")))
  end)

  it("rejects resp2 with one bit flipped anywhere before the FINGERPRINT", function()
    local bytes = unhex(V.resp2)
    for i = 21, #bytes - 8, 7 do
      local b = bytes:sub(1, i - 1) .. string.char(bytes:byte(i) ~ 0x01) .. bytes:sub(i + 1)
      local d, _, code = bt2c.stun_decode(b)
      assert.is_nil(d)
      -- a flip in a length field breaks the structure before the CRC is checked
      assert.is_truthy(code == "fingerprint" or code == "attr_truncated" or code == "fingerprint_pos")
    end
  end)
end)

describe("STUN encoder", function()
  it("CRC-32 is zlib's (check value of \"123456789\")", function()
    assert.are.equal(0xCBF43926, bt2c.stun_crc32("123456789"))
    assert.are.equal(0, bt2c.stun_crc32(""))
  end)

  it("encodes method and class into the type bits", function()
    local function t(method, class)
      return bt2c.stun_decode(bt2c.stun_encode{ method = method, class = class, txid = TXID }).type
    end
    assert.are.equal(0x0001, t(0x001, "request"))
    assert.are.equal(0x0101, t(0x001, "success"))
    assert.are.equal(0x0111, t(0x001, "error"))
    assert.are.equal(0x0113, t(0x003, "error"))
    assert.are.equal(0x0016, t(0x006, "indication"))
    assert.are.equal(0x0017, t(0x007, "indication"))
    assert.are.equal(0x0109, t(0x009, "success"))
  end)

  it("draws a fresh random txid when none is given", function()
    local a = bt2c.stun_decode(bt2c.stun_encode{ method = 1 }).txid
    local b = bt2c.stun_decode(bt2c.stun_encode{ method = 1 }).txid
    assert.are.equal(12, #a)
    assert.are_not.equal(a, b)
  end)

  it("pads values to 4 bytes with zeros and keeps the real length", function()
    local m = bt2c.stun_encode{ method = 1, txid = TXID, attrs = { { type = "USERNAME", value = "abcde" } } }
    assert.are.equal(20 + 4 + 8, #m)
    assert.are.equal(unhex("000600056162636465000000"), m:sub(21))
    assert.are.equal("abcde", bt2c.stun_decode(m).byName.USERNAME.value)
  end)

  it("XORs an IPv4 address with the cookie", function()
    local m = bt2c.stun_encode{ method = 1, class = "success", txid = TXID,
      attrs = { { type = "XOR-MAPPED-ADDRESS", address = "203.0.113.10", port = 37205 } } }
    assert.are.equal("002000080001b047ea12d548", hex(m:sub(21)))
  end)

  it("XORs an IPv6 address with cookie and txid, and reads it back", function()
    local m = bt2c.stun_encode{ method = 1, class = "success", txid = TXID,
      attrs = { { type = "XOR-MAPPED-ADDRESS", address = "2001:db8::1", port = 3478 },
                { type = "MAPPED-ADDRESS", address = "2001:db8::2", port = 3479 } } }
    -- independent computation of the XORed bytes
    local plain = unhex("20010db8000000000000000000000001")
    local pad = unhex("2112a442") .. TXID
    local x = {}
    for i = 1, 16 do x[i] = string.char(plain:byte(i) ~ pad:byte(i)) end
    local want = string.pack(">I2I2BBI2", 0x0020, 20, 0, 2, 3478 ~ 0x2112) .. table.concat(x)
    assert.are.equal(hex(want), hex(m:sub(21, 44)))
    local d = bt2c.stun_decode(m)
    assert.are.equal("2001:db8::1", d.byName["XOR-MAPPED-ADDRESS"].address)
    assert.are.equal(3478, d.byName["XOR-MAPPED-ADDRESS"].port)
    assert.are.equal(6, d.byName["XOR-MAPPED-ADDRESS"].family)
    assert.are.equal("2001:db8::2", d.byName["MAPPED-ADDRESS"].address)
    assert.are.equal(3479, d.byName["MAPPED-ADDRESS"].port)
  end)

  it("writes ERROR-CODE as class and number and UNKNOWN-ATTRIBUTES as a list", function()
    local m = bt2c.stun_encode{ method = 1, class = "error", txid = TXID,
      attrs = { { type = "ERROR-CODE", code = 420, reason = "Unknown Attribute" },
                { type = "UNKNOWN-ATTRIBUTES", types = { 0x7777, 0x0003 } } } }
    assert.are.equal("00000414", hex(m:sub(25, 28)))
    local d = bt2c.stun_decode(m)
    assert.are.equal(420, d.byName["ERROR-CODE"].code)
    assert.are.equal("Unknown Attribute", d.byName["ERROR-CODE"].reason)
    assert.are.same({ 0x7777, 0x0003 }, d.byName["UNKNOWN-ATTRIBUTES"].types)
  end)

  it("strips the trailing NULs coturn counts in a reason phrase", function()
    local m = raw(0x0114, attr(0x0009, "\0\0\4\38Stale nonce\0") .. attr(0x0015, "eb1b788933367b62"))
    local d = assert(bt2c.stun_decode(m))
    assert.are.equal(438, d.byName["ERROR-CODE"].code)
    assert.are.equal("Stale nonce", d.byName["ERROR-CODE"].reason)
    m = raw(0x0114, attr(0x0009, "\0\0\4\37Invalid allocation\0\0"))
    assert.are.equal("Invalid allocation", bt2c.stun_decode(m).byName["ERROR-CODE"].reason)
  end)

  it("computes MESSAGE-INTEGRITY-SHA256 and verifies both kinds", function()
    local key = "short-term password"
    local m = bt2c.stun_encode{ method = 1, txid = TXID, attrs = {
      { type = "USERNAME", value = "a:b" },
      { type = "MESSAGE-INTEGRITY", key = key },
      { type = "MESSAGE-INTEGRITY-SHA256", key = key },
      { type = "FINGERPRINT" } } }
    assert.is_true(bt2c.stun_check_integrity(m, key))
    assert.is_true(bt2c.stun_check_integrity(m, key, "sha256"))
    assert.is_false(bt2c.stun_check_integrity(m, "other", "sha256"))
  end)

  it("refuses attributes after FINGERPRINT and anything but FINGERPRINT after M-I", function()
    assert.has_error(function()
      bt2c.stun_encode{ method = 1, attrs = { { type = "FINGERPRINT" }, { type = "SOFTWARE", value = "x" } } }
    end)
    assert.has_error(function()
      bt2c.stun_encode{ method = 1, attrs = { { type = "MESSAGE-INTEGRITY", key = "k" },
                                             { type = "SOFTWARE", value = "x" } } }
    end)
    assert.has_error(function()
      bt2c.stun_encode{ method = 1, attrs = { { type = "ERROR-CODE", code = 200, reason = "no" } } }
    end)
  end)
end)

describe("STUN decoder on malformed input", function()
  local good = raw(0x0001, attr(0x8022, "bt2c"))

  local function rejects(bytes, code)
    local d, why, c = bt2c.stun_decode(bytes)
    assert.is_nil(d)
    assert.is_string(why)
    assert.are.equal(code, c)
  end

  it("accepts the well-formed baseline", function()
    assert.is_table(bt2c.stun_decode(good))
  end)

  it("rejects every truncation", function()
    for n = 0, #good - 1 do
      local d = bt2c.stun_decode(good:sub(1, n))
      assert.is_nil(d)
    end
    rejects(good:sub(1, 19), "short")
    rejects(good:sub(1, #good - 4), "length")
  end)

  it("rejects a bad magic cookie (RFC 3489 messages included)", function()
    rejects(raw(0x0001, "", { cookie = 0x2112A443 }), "cookie")
    rejects(raw(0x0101, attr(0x0001, "\0\1\0\80\127\0\0\1"), { cookie = 0 }), "cookie")
  end)

  it("rejects a length that is not a multiple of 4 or not the datagram's size", function()
    rejects(raw(0x0001, "abc"), "length")
    rejects(raw(0x0001, attr(0x8022, "bt2c"), { len = 4 }), "length")
    rejects(raw(0x0001, attr(0x8022, "bt2c"), { len = 12 }), "length")
  end)

  it("rejects an attribute that runs past the end", function()
    rejects(raw(0x0001, string.pack(">I2I2", 0x8022, 8) .. "bt2c"), "attr_truncated")
    rejects(raw(0x0001, string.pack(">I2I2", 0x8022, 0xFFFF) .. "bt2c"), "attr_truncated")
    -- 5 bytes of value: the padding would run past the end
    rejects(raw(0x0001, string.pack(">I2I2", 0x8022, 5) .. "bt2c"), "attr_truncated")
  end)

  it("rejects a wrong FINGERPRINT, one not last, and a badly sized M-I", function()
    local m = bt2c.stun_encode{ method = 1, txid = TXID, attrs = { { type = "FINGERPRINT" } } }
    assert.is_true(bt2c.stun_decode(m).fingerprint)
    rejects(m:sub(1, -2) .. string.char(m:byte(-1) ~ 0xff), "fingerprint")
    rejects(raw(0x0001, attr(0x8028, "\0\0\0\0") .. attr(0x8022, "x")), "fingerprint_pos")
    rejects(raw(0x0001, attr(0x8028, "\0\0\0\0\0\0\0\0")), "attr_length")
    rejects(raw(0x0001, attr(0x0008, string.rep("\0", 16))), "attr_length")
  end)

  it("tells STUN from ChannelData and anything else by the first two bits", function()
    rejects(string.rep("\128", 20), "not_stun")
    local cd = assert(bt2c.stun_decode(unhex("4000000568656c6c6f000000")))
    assert.are.equal("channel_data", cd.kind)
    assert.are.equal(0x4000, cd.channel)
    assert.are.equal("hello", cd.data)
    assert.is_nil(bt2c.stun_decode(unhex("4000000968656c6c6f000000"))) -- data past the end
    assert.is_nil(bt2c.stun_decode(unhex("5000000568656c6c6f000000"))) -- channel beyond 0x4FFF
  end)

  it("reports unknown comprehension-required attributes, not optional ones", function()
    local m = raw(0x0001, attr(0x7777, "x") .. attr(0xC001, "y") .. attr(0x0020, ""))
    local d = assert(bt2c.stun_decode(m))
    assert.are.same({ 0x7777 }, d.unknown)
  end)

  it("ignores attributes after MESSAGE-INTEGRITY, FINGERPRINT excepted", function()
    local m = raw(0x0001, attr(0x0008, string.rep("\0", 20)) .. attr(0x7777, "x") .. attr(0x8022, "late"))
    local d = assert(bt2c.stun_decode(m))
    assert.are.same({}, d.unknown)
    assert.is_nil(d.byName.SOFTWARE)
    assert.is_true(d.attrs[3].ignored)
  end)

  it("rejects address attributes of the wrong size without failing the message", function()
    local d = assert(bt2c.stun_decode(raw(0x0101, attr(0x0020, "\0\1\0\80\1\2\3"))))
    assert.is_nil(d.byName["XOR-MAPPED-ADDRESS"].address)
    d = assert(bt2c.stun_decode(raw(0x0101, attr(0x0020, "\0\3\0\80\1\2\3\4"))))
    assert.is_nil(d.byName["XOR-MAPPED-ADDRESS"].address)
  end)
end)

describe("STUN framing", function()
  it("ChannelData: encodes channels 0x4000..0x4FFF, padded on request", function()
    assert.are.equal("4000000568656c6c6f", hex(bt2c.stun_channel_encode(0x4000, "hello")))
    assert.are.equal("4fff000568656c6c6f000000", hex(bt2c.stun_channel_encode(0x4FFF, "hello", true)))
    assert.is_nil(bt2c.stun_channel_encode(0x3FFF, "x"))
    assert.is_nil(bt2c.stun_channel_encode(0x5000, "x"))
  end)

  it("frame length for a stream: needs 4 bytes, then knows", function()
    local m = unhex(V.resp2)
    assert.are.equal(0, bt2c.stun_frame_len(m:sub(1, 3)))
    assert.are.equal(#m, bt2c.stun_frame_len(m:sub(1, 4)))
    assert.are.equal(#m, bt2c.stun_frame_len(m .. "trailing"))
    assert.are.equal(12, bt2c.stun_frame_len(unhex("40000005")))
    assert.are.equal(-1, bt2c.stun_frame_len("\128\0\0\0"))
    assert.are.equal(-1, bt2c.stun_frame_len(unhex("0001000021120000")))
  end)
end)
