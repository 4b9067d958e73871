-- Unit: the envelope codec, the JSON reader and node identities (through
-- the bt2c module built from the same sources as bt2cd).
local bt2c = require "bt2c"

local function id20(c) return string.rep(c, 20) end

describe("envelope", function()
  it("encodes the documented layout and decodes it back", function()
    local payload = '{"nonce":1,"pong":false}'
    local wire = bt2c.env_encode({ type = "peer_ping", origin = id20("\1"), payload = payload })
    assert.equal(64 + #payload, #wire)
    assert.equal(1, wire:byte(1))                     -- version
    assert.equal(3, wire:byte(2))                     -- PEER_PING
    assert.equal(0, wire:byte(3))                     -- flags
    assert.equal(0, wire:byte(4))                     -- hops
    assert.equal(0, wire:byte(5))                     -- path length
    assert.equal("\0\0\0", wire:sub(6, 8))           -- reserved
    assert.equal(string.pack(">I4", #payload), wire:sub(9, 12))
    assert.equal(id20("\1"), wire:sub(13, 32))
    assert.equal(bt2c.env_message_id(3, payload), wire:sub(33, 64))
    assert.equal(payload, wire:sub(65))
    local list = assert(bt2c.env_decode_batch(wire))
    assert.equal(1, #list)
    assert.equal("peer_ping", list[1].type_name)
    assert.equal(payload, list[1].payload)
  end)

  it("carries a relay path and a target", function()
    local wire = bt2c.env_encode({ type = "block", flags = 2, hops = 2, origin = id20("o"),
      path = { id20("a"), id20("b") }, target = id20("t"), payload = "{}" })
    assert.equal(64 + 40 + 20 + 2, #wire)
    assert.equal(2 + 4, wire:byte(3)) -- DIRECT | TARGET
    local e = assert(bt2c.env_decode_batch(wire))[1]
    assert.same({ id20("a"), id20("b") }, e.path)
    assert.equal(id20("t"), e.target)
    assert.equal(2, e.hops)
  end)

  it("splits a batch of several envelopes", function()
    local parts = {}
    for i = 1, 50 do
      parts[i] = bt2c.env_encode({ type = "transaction", origin = id20("x"), payload = '{"n":' .. i .. "}" })
    end
    local list = assert(bt2c.env_decode_batch(table.concat(parts)))
    assert.equal(50, #list)
    assert.equal('{"n":50}', list[50].payload)
  end)

  it("computes the message id as SHA-256(type || payload)", function()
    -- sha256 of "\4{}" (type BLOCK), checked against an independent tool
    local h = io.popen("printf '\\004{}' | sha256sum"):read("l"):match("^(%x+)")
    local id = bt2c.env_message_id(4, "{}")
    assert.equal(h, (id:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
  end)

  local good = bt2c.env_encode({ type = "block", origin = id20("o"), payload = "{}" })
  local bad = {
    { "empty message", "", "empty message" },
    { "truncated header", good:sub(1, 63), "truncated header" },
    { "wrong version", "\2" .. good:sub(2), "unsupported envelope version" },
    { "type 0", good:sub(1, 1) .. "\0" .. good:sub(3), "unknown message type" },
    { "type 14", good:sub(1, 1) .. "\14" .. good:sub(3), "unknown message type" },
    { "unknown flag", good:sub(1, 2) .. "\128" .. good:sub(4), "unknown flags set" },
    { "reserved byte", good:sub(1, 5) .. "\1" .. good:sub(7), "reserved bytes not zero" },
    { "path too long", good:sub(1, 3) .. "\33\33" .. good:sub(6), "relay path too long" },
    { "path beyond the message", good:sub(1, 3) .. "\5\5" .. good:sub(6), "lengths exceed the message" },
    { "payload length lies", good:sub(1, 8) .. string.pack(">I4", 0xffffffff) .. good:sub(13),
      "lengths exceed the message" },
    { "direct without target", good:sub(1, 2) .. "\2" .. good:sub(4), "direct message without a target" },
    { "target flag without bytes", good:sub(1, 2) .. "\6" .. good:sub(4), "lengths exceed the message" },
    { "target without direct", good:sub(1, 2) .. "\4" .. good:sub(4), "target without the direct flag" },
    { "relay and direct", good:sub(1, 2) .. "\7" .. good:sub(4), "relay and direct flags together" },
    { "hops without a path", good:sub(1, 3) .. "\1" .. good:sub(5), "hops differ from the path length" },
  }
  for _, case in ipairs(bad) do
    it("refuses: " .. case[1], function()
      local list, why = bt2c.env_decode_batch(case[2])
      assert.is_nil(list)
      assert.equal(case[3], why)
    end)
  end

  it("reports a bad envelope after good ones in a batch", function()
    local list, why, before = bt2c.env_decode_batch(good .. good .. good:sub(1, 65))
    assert.is_nil(list)
    assert.equal("lengths exceed the message", why)
    assert.equal(2, #before)
  end)
end)

describe("json reader", function()
  it("reads every JSON type", function()
    local v = assert(bt2c.json_parse(' {"a": [1, -2.5e3, true, false, null], '
      .. '"s": "x\\u00e9\\ud83d\\ude00\\n", "o": {}} '))
    assert.same({ 1, -2500, true, false, bt2c.null }, v.a)
    assert.equal("x\u{e9}\u{1f600}\n", v.s)
    assert.same({}, v.o)
  end)

  local bad = {
    { "", "offset 0: unexpected end" },
    { "{", "offset 1: expected a string key" },
    { "[1,]", "offset 3: bad number" },
    { "[1 2]", "offset 3: expected ',' or ']'" },
    { '{"a" 1}', "offset 5: expected ':'" },
    { '"abc', "offset 1: unterminated string" },
    { '"\1"', "offset 1: control character in string" },
    { '"\255"', "offset 1: invalid UTF-8 in string" },
    { '"\237\160\128"', "offset 1: invalid UTF-8 in string" }, -- encoded surrogate
    { '"\\ud800"', "offset 7: unpaired surrogate" },
    { '"\\x"', "offset 3: bad escape" },
    { "01", "offset 1: trailing characters" },
    { "1e999", "offset 0: number out of range" },
    { "tru", "offset 0: unexpected character" },
    { "[] []", "offset 3: trailing characters" },
    { string.rep("[", 40) .. string.rep("]", 40), "offset 32: nesting too deep" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. string.format("%q", case[1]):sub(1, 30), function()
      local v, err = bt2c.json_parse(case[1])
      assert.is_nil(v)
      assert.equal(case[2], err)
    end)
  end

  it("writes strings that it reads back", function()
    local s = "quote\" back\\ nl\n tab\t nul\0 ctl\1 é"
    assert.equal(s, bt2c.json_parse(bt2c.json_string(s)))
  end)
end)

local function unhex(h)
  return (h:gsub("%s", ""):gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

describe("json_object_keys (chain messages found without a tree)", function()
  local keys = { "requestId", "hash" }
  local ESCAPED = 1 << 30
  it("says which top-level keys are there", function()
    assert.equal(0, bt2c.json_object_keys('{"height": 1, "pad": "xx"}', keys))
    assert.equal(2, bt2c.json_object_keys('{"height": 1, "hash": "ab"}', keys))
    assert.equal(3, bt2c.json_object_keys(' {"hash": 1, "a": {}, "requestId": 7} ', keys))
    assert.equal(1, bt2c.json_object_keys('{"requestId": "r"}', keys))
  end)
  it("ignores nested keys, strings that look like keys, and near misses", function()
    assert.equal(0, bt2c.json_object_keys('{"b": {"hash": 1}, "c": [{"requestId": 2}]}', keys))
    assert.equal(0, bt2c.json_object_keys('{"x": "\\"hash\\": 1", "hashx": 1, "has": 2}', keys))
  end)
  it("flags an escaped key, which may be one of them", function()
    assert.equal(ESCAPED, bt2c.json_object_keys('{"h\\u0061sh": "ab"}', keys))
    assert.equal(ESCAPED | 2, bt2c.json_object_keys('{"hash": 1, "\\n": 2}', keys))
  end)
  it("is -1 for what is not a valid JSON object", function()
    for _, text in ipairs({ "", "[]", '"hash"', '{"hash": }', '{"hash": 1', '{"hash": 1} x', "{hash: 1}" }) do
      assert.equal(-1, bt2c.json_object_keys(text, keys), text)
    end
  end)
end)

describe("handshake transcript", function()
  -- the worked example of docs/PROTOCOL.md section 9 (RFC 8032 test keys 1 and 2)
  local dpub = unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
  local lpub = unhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
  it("derives the example's node ids", function()
    assert.equal("21fe31dfa154a261626bf854046fd2271b7bed4b", bt2c.identity_id_of(dpub))
    assert.equal("39f713d0a644253f04529421b9f51b9b08979d08", bt2c.identity_id_of(lpub))
  end)
  it("builds the example's transcript and verifies its signatures", function()
    local did = unhex("21fe31dfa154a261626bf854046fd2271b7bed4b")
    local lid = unhex("39f713d0a644253f04529421b9f51b9b08979d08")
    local dn, ln = string.rep("\1", 32), string.rep("\2", 32)
    local t = bt2c.hs_transcript(true, "bt2c-mainnet", did, lid, dn, ln)
    assert.equal(unhex([[
      627432632f68616e647368616b652f763101010c627432632d6d61696e6e6574
      21fe31dfa154a261626bf854046fd2271b7bed4b39f713d0a644253f04529421
      b9f51b9b08979d08010101010101010101010101010101010101010101010101
      0101010101010101020202020202020202020202020202020202020202020202
      0202020202020202]]), t)
    assert.is_true(bt2c.identity_verify(dpub, t, unhex(
      "a7dda692c7ce308cac6a9a42939bba8e8049b7b6b3d7f4d1ec945ee31051433f" ..
      "acee91478b594978b5deddfe51f155593df15294452c2ac271852f3b5b861d03")))
    local t2 = bt2c.hs_transcript(false, "bt2c-mainnet", did, lid, dn, ln)
    assert.equal(2, t2:byte(18))
    assert.is_true(bt2c.identity_verify(lpub, t2, unhex(
      "675b2b4d236fc8e28728f4301d814a8305fe87d58f27ea4b245d41c4454e6128" ..
      "12a27002593588d276437fee6071d993a2323a392e5a8f49ad016d6cc42ccd0a")))
    assert.is_false(bt2c.identity_verify(lpub, t, unhex(
      "675b2b4d236fc8e28728f4301d814a8305fe87d58f27ea4b245d41c4454e6128" ..
      "12a27002593588d276437fee6071d993a2323a392e5a8f49ad016d6cc42ccd0a")))
  end)
end)

describe("identity", function()
  it("derives the node id from the public key and signs", function()
    local me = bt2c.identity_new()
    assert.matches("^%x+$", me.id_hex)
    assert.equal(40, #me.id_hex)
    assert.equal(me.id_hex, bt2c.identity_id_of(me.pub))
    local sig = me.sign("transcript")
    assert.equal(64, #sig)
    assert.is_true(bt2c.identity_verify(me.pub, "transcript", sig))
    assert.is_false(bt2c.identity_verify(me.pub, "transcripT", sig))
    local other = bt2c.identity_new()
    assert.is_false(bt2c.identity_verify(other.pub, "transcript", sig))
  end)

  it("creates the key once, mode 0600, and refuses a readable one", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local a = assert(bt2c.identity_load(dir))
    local st = bt2c.stat(dir .. "/node.key")
    assert.equal(tonumber("600", 8), st.mode)
    local b = assert(bt2c.identity_load(dir))
    assert.equal(a.id_hex, b.id_hex)
    bt2c.chmod(dir .. "/node.key", tonumber("644", 8))
    local c, err = bt2c.identity_load(dir)
    assert.is_nil(c)
    assert.matches("readable by others; run: chmod 600", err, 1, true)
    bt2c.chmod(dir .. "/node.key", tonumber("600", 8))
    local f = io.open(dir .. "/node.key", "w")
    f:write("garbage\n")
    f:close()
    c, err = bt2c.identity_load(dir)
    assert.is_nil(c)
    assert.matches("not an Ed25519 private key", err, 1, true)
    os.execute("rm -rf " .. dir)
  end)
end)
