-- Unit: the hash rules of docs/PROTOCOL.md 7.2 (canonical JSON, transaction
-- and block hashes, with the worked examples of that section), the
-- structural checks of blocks and transactions, the built-in chain store,
-- and the signing bytes and checks of consensus messages (7.4).
local bt2c = require "bt2c"
local cjson = require "cjson"

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(h)
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local GENESIS = "db59cbc865e61f72b583b925658758aa25f47873fd806c2b2b2a5e79f2c569be"
local ZERO = string.rep("0", 64)
-- the worked example of PROTOCOL.md 7.2
local TX = '{"to":"bob","from":"alice","amount":1.5,"fee":0.01,"nonce":1,"timestamp":1764000000000}'
local TX_CONTENT = '{"amount":1.5,"fee":0.01,"from":"alice","nonce":1,"timestamp":1764000000000,"to":"bob"}'
local TX_HASH = "34def48b59acbb86fb7a401bc577798604bfaa235a8c3cfa31716dc932639124"
local BLOCK1_HASH = "bcbad8c83943754e863d4fca80e253cb10cd7ce99f733bdbd9d44133097b741d"

-- tx with its hash member set (computed unless given)
local function sealed(t, hash)
  local text = cjson.encode(t)
  hash = hash or bt2c.chain_sha256(assert(bt2c.chain_canonical(text, "hash")))
  t.hash = hash
  return cjson.encode(t), hash
end

describe("canonical JSON (RFC 8785)", function()
  it("writes numbers as ECMAScript does (RFC 8785 appendix B)", function()
    local cases = {
      { "0000000000000000", "0" }, { "8000000000000000", "0" }, { "0000000000000001", "5e-324" },
      { "8000000000000001", "-5e-324" }, { "7fefffffffffffff", "1.7976931348623157e+308" },
      { "4340000000000000", "9007199254740992" }, { "4430000000000000", "295147905179352830000" },
      { "44b52d02c7e14af5", "9.999999999999997e+22" }, { "44b52d02c7e14af6", "1e+23" },
      { "444b1ae4d6e2ef4f", "999999999999999900000" }, { "444b1ae4d6e2ef50", "1e+21" },
      { "3eb0c6f7a0b5ed8c", "9.999999999999997e-7" }, { "3eb0c6f7a0b5ed8d", "0.000001" },
      { "41b3de4355555554", "333333333.33333325" }, { "41b3de4355555556", "333333333.3333334" },
      { "becbf647612f3696", "-0.0000033333333333333333" }, { "43143ff3c1cb0959", "1424953923781206.2" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], bt2c.chain_number(string.unpack(">d", unhex(c[1]))), c[1])
    end
    assert.equal("1.5", bt2c.chain_number(1.5))
    assert.equal("0.01", bt2c.chain_number(0.01))
    assert.equal("1764000000000", bt2c.chain_number(1764000000000))
  end)

  it("sorts members by UTF-16 code units and escapes only what JSON must", function()
    local input = '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Dalet","1":"One",'
      .. '"\\ud83d\\ude00":"Emoji","\\u0080":"Control","\\u00f6":"o umlaut"}'
    assert.equal('{"\\r":"Carriage Return","1":"One","\u{80}":"Control","\u{f6}":"o umlaut",'
      .. '"\u{20ac}":"Euro Sign","\u{1f600}":"Emoji","\u{fb33}":"Dalet"}', bt2c.chain_canonical(input))
    assert.equal('{"a":"\\b\\f\\n\\r\\t\\u001f\\"\\\\/"}',
      bt2c.chain_canonical('{"a":"\\b\\f\\n\\r\\t\\u001F\\"\\\\\\/"}'))
    assert.equal('[1,{"a":null,"b":[]},true]', bt2c.chain_canonical(' [ 1.0 , {"b":[ ],"a":null}, true ] '))
  end)

  it("refuses duplicate member names and can leave one member out", function()
    local out, err = bt2c.chain_canonical('{"a":1,"b":{"x":1,"x":2}}')
    assert.is_nil(out)
    assert.matches('duplicate member "x"', err)
    assert.equal('{"a":1}', bt2c.chain_canonical('{"hash":"ff","a":1}', "hash"))
  end)
end)

describe("transaction hash and checks", function()
  it("is SHA-256 of the canonical content without the hash (worked example)", function()
    assert.equal(TX_CONTENT, bt2c.chain_canonical(TX))
    assert.equal(TX_HASH, bt2c.chain_sha256(TX_CONTENT))
    local text = TX:gsub("}$", ',"hash":"' .. TX_HASH:upper() .. '"}')
    local canon, hash = bt2c.chain_tx_check(text)
    assert.equal(TX_HASH, hash)
    -- stored and sent canonically, the hash in lowercase
    assert.equal(TX_CONTENT:gsub('"nonce"', '"hash":"' .. TX_HASH .. '","nonce"'), canon)
  end)

  it("covers every member, known or not", function()
    local text, hash = sealed({ from = "a", to = "b", amount = 2, timestamp = 5, memo = "x" })
    assert.equal(hash, select(2, bt2c.chain_tx_check(text)))
    local forged = text:gsub('"memo":"x"', '"memo":"y"')
    local ok, err = bt2c.chain_tx_check(forged)
    assert.is_nil(ok)
    assert.matches("does not match its content", err)
  end)

  it("checks the documented fields", function()
    local bad = {
      { { to = "b", amount = 1, timestamp = 1 }, "from must be a string" },
      { { from = "a", to = "b", amount = -1, timestamp = 1 }, "amount must be a number >= 0" },
      { { from = "a", to = "b", amount = "1", timestamp = 1 }, "amount must be a number >= 0" },
      { { from = "a", to = "b", amount = 1, fee = -0.5, timestamp = 1 }, "fee must be" },
      { { from = "a", to = "b", amount = 1, nonce = 1.5, timestamp = 1 }, "nonce must be an integer" },
      { { from = "a", to = "b", amount = 1 }, "timestamp must be an integer" },
      { { from = string.rep("a", 257), to = "b", amount = 1, timestamp = 1 }, "at most 256 bytes" },
      { { from = "a", to = "b", amount = 1, timestamp = 1, memo = string.rep("x", 70000) }, "exceeds 65536" },
    }
    for i, c in ipairs(bad) do
      local ok, err = bt2c.chain_tx_check((sealed(c[1])))
      assert.is_nil(ok, "case " .. i)
      assert.matches(c[2], err, 1, true)
    end
    local ok, err = bt2c.chain_tx_check('{"from":"a","to":"b","amount":1,"timestamp":1}')
    assert.is_nil(ok)
    assert.matches("hash must be 64 hex", err)
    assert.matches("a transaction is a JSON object", select(2, bt2c.chain_tx_check("[1]")))
  end)
end)

describe("block hash and checks", function()
  local tx_canon = bt2c.chain_tx_check((TX:gsub("}$", ',"hash":"' .. TX_HASH .. '"}')))

  it("has a fixed genesis block", function()
    local json, hash = bt2c.chain_genesis()
    assert.equal(GENESIS, hash)
    assert.equal(GENESIS, bt2c.chain_sha256("bt2c-block-v1\n0\n" .. ZERO .. "\n0\n0\n-\n"))
    assert.equal('{"hash":"' .. GENESIS .. '","height":0,"previousHash":"' .. ZERO
      .. '","timestamp":0,"transactions":[]}', json)
  end)

  it("hashes height, previousHash, timestamp, transaction hashes and data (worked example)", function()
    local header = "bt2c-block-v1\n1\n" .. GENESIS .. "\n1764000000500\n1\n" .. TX_HASH .. "\n-\n"
    assert.equal(BLOCK1_HASH, bt2c.chain_sha256(header))
    assert.equal(BLOCK1_HASH, bt2c.chain_block_hash(1, GENESIS, 1764000000500, { TX_HASH }))
    local json, hash = bt2c.chain_block_make(1, GENESIS, 1764000000500, { tx_canon })
    assert.equal(BLOCK1_HASH, hash)
    local b = assert(bt2c.chain_block_check(json))
    assert.equal(1, b.height)
    assert.same({ TX_HASH }, b.tx_hashes)
    assert.equal(json, b.json)
    -- data is covered through the hash of its canonical JSON
    local dj, dh = bt2c.chain_block_make(2, hash, 1764000001000, {}, '{"note":"hi","n":1}')
    local data_hash = bt2c.chain_sha256('{"n":1,"note":"hi"}')
    assert.equal(bt2c.chain_block_hash(2, hash, 1764000001000, {}, data_hash), dh)
    assert.equal(dh, bt2c.chain_block_check(dj).hash)
    assert.is_nil(bt2c.chain_block_check((dj:gsub('"hi"', '"ho"'))))
  end)

  it("finds any change to a block", function()
    local json = bt2c.chain_block_make(1, GENESIS, 1764000000500, { tx_canon })
    local changes = {
      { json:gsub('"timestamp":1764000000500', '"timestamp":1764000000501'), "does not match its content" },
      { json:gsub('"amount":1.5', '"amount":15'), "transaction 0: transaction: hash" },
      { json:gsub('"height":1', '"height":2'), "does not match" },
      { json:gsub('"previousHash":"db', '"previousHash":"dc'), "does not match" },
    }
    for i, c in ipairs(changes) do
      local ok, err = bt2c.chain_block_check(c[1])
      assert.is_nil(ok, "change " .. i)
      assert.matches(c[2], err, 1, true)
    end
  end)

  it("checks the shape, duplicates and size", function()
    local dup = cjson.decode((bt2c.chain_block_make(1, GENESIS, 5, { tx_canon, tx_canon })))
    assert.matches("appears twice", select(2, bt2c.chain_block_check(cjson.encode(dup))))
    local function blk(fields)
      return '{"hash":"' .. ZERO .. '","height":1,"previousHash":"' .. ZERO .. '","timestamp":1,'
        .. '"transactions":[]' .. fields .. '}'
    end
    local cases = {
      { blk(""):gsub('"hash":"0+"', '"hash":"00"'), "hash must be 64 hex" },
      { blk(""):gsub('"height":1', '"height":-1'), "height must be" },
      { blk(""):gsub('"timestamp":1', '"timestamp":1.5'), "timestamp must be" },
      { blk(""):gsub(',"transactions":%[%]', ""), "transactions must be an array" },
      { blk(""):gsub('"previousHash":"0+",', ""), "previousHash must be" },
    }
    for i, c in ipairs(cases) do
      local ok, err = bt2c.chain_block_check(c[1])
      assert.is_nil(ok, "case " .. i)
      assert.matches(c[2], err, 1, true)
    end
    -- unknown members are ignored and not kept
    local json, hash = bt2c.chain_block_make(1, GENESIS, 5, {})
    local b = assert(bt2c.chain_block_check((json:gsub("^{", '{"extra":[1,2],'))))
    assert.equal(hash, b.hash)
    assert.equal(json, b.json)
    local ok, err = bt2c.chain_block_check(json, 100)
    assert.is_nil(ok)
    assert.matches("exceeds 100", err)
  end)
end)

describe("chain store", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -m 700 " .. dir)
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("starts at genesis, appends only on the tip, and survives a reopen", function()
    local st = assert(bt2c.chain_open(dir .. "/chain.db"))
    local h, tip = st:height()
    assert.equal(0, h)
    assert.equal(GENESIS, tip)
    local prev = GENESIS
    local hashes = {}
    for i = 1, 50 do
      local json, hash = bt2c.chain_block_make(i, prev, 1000 + i, {})
      assert.is_true(st:put(json))
      hashes[i], prev = hash, hash
    end
    -- not on the tip: refused
    local other = bt2c.chain_block_make(51, GENESIS, 7, {})
    local ok, err = st:put(other)
    assert.is_nil(ok)
    assert.matches("does not extend the tip 50", err)
    assert.is_nil(st:put((bt2c.chain_block_make(50, hashes[49], 9, {}))))
    st:close()
    st = assert(bt2c.chain_open(dir .. "/chain.db"))
    h, tip = st:height()
    assert.equal(50, h)
    assert.equal(hashes[50], tip)
    assert.equal(hashes[7], cjson.decode(st:get(7)).hash)
    assert.equal(7, cjson.decode(st:get(hashes[7])).height)
    assert.is_nil(st:get(51))
    st:close()
  end)

  it("keeps a mempool that blocks drain", function()
    local st = assert(bt2c.chain_open(dir .. "/chain.db"))
    local t1, h1 = sealed({ from = "a", to = "b", amount = 1, timestamp = 1 })
    local t2, h2 = sealed({ from = "a", to = "c", amount = 2, timestamp = 2 })
    assert.equal(0, st:add_tx(t1))
    assert.equal(0, st:add_tx(t2))
    assert.equal(1, st:add_tx(t1)) -- known
    local list, n = st:pending()
    assert.equal(2, n)
    assert.equal(2, #list)
    local json = bt2c.chain_block_make(1, GENESIS, 10, { list[1] })
    assert.is_true(st:put(json))
    list, n = st:pending()
    assert.equal(1, n)
    assert.equal(h2, cjson.decode(list[1]).hash)
    assert.equal(h1, cjson.decode(st:get_tx(h1)).hash) -- confirmed ones stay readable
    assert.equal(1, st:add_tx(t1)) -- and known
    st:close()
  end)

  it("refuses a file that is not a chain store", function()
    local f = io.open(dir .. "/chain.db", "w")
    f:write("not sqlite at all, just text that is long enough to be looked at by sqlite......")
    f:close()
    local st, err = bt2c.chain_open(dir .. "/chain.db")
    assert.is_nil(st)
    assert.matches("not a bt2c chain store", err)
  end)
end)

describe("consensus messages", function()
  local NET = "bt2c-test"
  local HASH = string.rep("ab", 32)
  local v1, v2, v3, v4, outsider = bt2c.identity_new(), bt2c.identity_new(), bt2c.identity_new(),
    bt2c.identity_new(), bt2c.identity_new()
  local set = { v1.id_hex, v2.id_hex, v3.id_hex, v4.id_hex }

  local function vote(signer, fields)
    local v = { height = 12, round = 0, blockHash = HASH, vote = "prevote" }
    for k, x in pairs(fields or {}) do v[k] = x end
    local bytes = bt2c.consensus_vote_bytes(NET, v.height, v.round, v.blockHash, v.vote)
    v.validator = v.validator or signer.id_hex
    v.publicKey = v.publicKey or hex(signer.pub)
    v.signature = v.signature or hex(signer.sign(bytes))
    return cjson.encode(v)
  end

  it("signs domain-separated text lines", function()
    assert.equal("bt2c/consensus_vote/v1\nbt2c-test\n12\n0\n" .. HASH .. "\nprevote\n",
      bt2c.consensus_vote_bytes(NET, 12, 0, HASH, "prevote"))
    assert.equal("bt2c/consensus_proposal/v1\nbt2c-test\n12\n1\n" .. HASH .. "\n",
      bt2c.consensus_proposal_bytes(NET, 12, 1, HASH))
  end)

  it("verifies the worked example of PROTOCOL.md 7.4", function()
    local rfc1 = "21fe31dfa154a261626bf854046fd2271b7bed4b"
    local vote_json = '{"blockHash":"' .. BLOCK1_HASH .. '","height":1,"publicKey":'
      .. '"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","round":0,"signature":'
      .. '"9b864d590dae3f8fa04e09be867d48be674e6f994cbaf72244ef986e9b7d828c'
      .. 'd6676ac238328ab02aa024fae0614f8bc1da11954d57d839dfdddca2b17f9804",'
      .. '"validator":"' .. rfc1 .. '","vote":"prevote"}'
    assert.equal("ok", (bt2c.consensus_check_vote(vote_json, "bt2c-mainnet", { rfc1 })))
    assert.equal("bad_signature", (bt2c.consensus_check_vote(vote_json, "bt2c-testnet", { rfc1 })))
  end)

  it("accepts a vote signed by a validator of the current set", function()
    local verdict, err, who = bt2c.consensus_check_vote(vote(v2), NET, set)
    assert.equal("ok", verdict, err)
    assert.equal(v2.id_hex, who)
    assert.equal("ok", (bt2c.consensus_check_vote(vote(v2, { blockHash = "" }), NET, set)))
  end)

  it("rejects a node passing itself off as a validator", function()
    -- claims a validator's id, signs with its own key
    assert.equal("bad_key", (bt2c.consensus_check_vote(vote(outsider, { validator = v1.id_hex }), NET, set)))
    -- claims a validator's id and key, cannot sign for it
    local forged = vote(outsider, { validator = v1.id_hex, publicKey = hex(v1.pub) })
    assert.equal("bad_signature", (bt2c.consensus_check_vote(forged, NET, set)))
    -- its own id and key, but not in the set
    local verdict, err = bt2c.consensus_check_vote(vote(outsider), NET, set)
    assert.equal("not_validator", verdict)
    assert.matches("not in the current validator set", err)
    -- a valid signature replayed on another network or with another content
    assert.equal("bad_signature", (bt2c.consensus_check_vote(vote(v1), "bt2c-other", set)))
    local v = cjson.decode(vote(v1))
    v.round = 1
    assert.equal("bad_signature", (bt2c.consensus_check_vote(cjson.encode(v), NET, set)))
  end)

  it("tells unsigned and malformed votes apart", function()
    assert.equal("unsigned", (bt2c.consensus_check_vote('{"height":1,"round":0,"vote":"prevote"}', NET, set)))
    assert.equal("malformed", (bt2c.consensus_check_vote(vote(v1, { vote = "Pre vote" }), NET, set)))
    assert.equal("malformed", (bt2c.consensus_check_vote(vote(v1, { blockHash = "xyz" }), NET, set)))
    assert.equal("malformed", (bt2c.consensus_check_vote(vote(v1, { signature = "00" }), NET, set)))
  end)

  it("checks proposals: the block, its height and the proposer's signature", function()
    local json, hash = bt2c.chain_block_make(12, GENESIS, 99, {})
    -- built as text: cjson cannot write an empty list
    local function proposal(signer, height, block, block_hash)
      local sig = hex(signer.sign(bt2c.consensus_proposal_bytes(NET, height, 0, block_hash or hash)))
      return string.format('{"block":%s,"height":%d,"round":0,"proposer":"%s","publicKey":"%s",'
        .. '"signature":"%s"}', block or json, height, signer.id_hex, hex(signer.pub), sig)
    end
    local verdict, err, who = bt2c.consensus_check_proposal(proposal(v3, 12), NET, set)
    assert.equal("ok", verdict, err)
    assert.equal(v3.id_hex, who)
    assert.equal("not_validator", (bt2c.consensus_check_proposal(proposal(outsider, 12), NET, set)))
    assert.equal("malformed", (bt2c.consensus_check_proposal(proposal(v3, 13), NET, set)))
    local bad = json:gsub('"timestamp":99', '"timestamp":100')
    assert.equal("malformed", (bt2c.consensus_check_proposal(proposal(v3, 12, bad), NET, set)))
    local b13, h13 = bt2c.chain_block_make(13, GENESIS, 99, {})
    assert.equal("bad_signature", (bt2c.consensus_check_proposal(proposal(v3, 13, b13, hash), NET, set)))
    assert.equal("ok", (bt2c.consensus_check_proposal(proposal(v3, 13, b13, h13), NET, set)))
  end)

  describe("validator sets", function()
    local new = { v1, v2, outsider }
    table.sort(new, function(a, b) return a.id_hex < b.id_hex end)
    local entries = {}
    for i, k in ipairs(new) do entries[i] = { nodeId = k.id_hex, publicKey = hex(k.pub), power = 1 } end
    local body = cjson.encode({ epoch = 1, validators = entries })
    local bytes = assert(bt2c.consensus_set_bytes(NET, body))

    local function signed(signers, epoch, list)
      local b = { epoch = epoch or 1, validators = list or entries, signatures = {} }
      local by = bt2c.consensus_set_bytes(NET, cjson.encode({ epoch = b.epoch, validators = b.validators }))
        or "malformed sets have no signing bytes"
      for i, k in ipairs(signers) do
        b.signatures[i] = { publicKey = hex(k.pub), signature = hex(k.sign(by)) }
      end
      return cjson.encode(b)
    end

    it("signs one line per validator in nodeId order", function()
      local want = "bt2c/validator_set/v1\nbt2c-test\n1\n"
      for _, e in ipairs(entries) do want = want .. e.nodeId .. " " .. e.publicKey .. " 1\n" end
      assert.equal(want, bytes)
    end)

    it("needs more than 2/3 of the current set", function()
      local verdict, err, k = bt2c.consensus_check_set(signed({ v1, v2, v3 }), NET, set, 0)
      assert.equal("ok", verdict, err)
      assert.equal(3, k)
      verdict, err, k = bt2c.consensus_check_set(signed({ v1, v2, outsider }), NET, set, 0)
      assert.equal("no_quorum", verdict) -- the outsider does not count
      assert.equal(2, k)
      assert.matches("signed by 2 of the 4 current validators", err)
      assert.equal("no_quorum", (bt2c.consensus_check_set(signed({ v1, v2, v2 }), NET, set, 0)))
      assert.equal("no_quorum", (bt2c.consensus_check_set(signed({ v1 }), NET, {}, 0)))
    end)

    it("refuses stale epochs, bad signatures and malformed sets", function()
      assert.equal("stale", (bt2c.consensus_check_set(signed({ v1, v2, v3 }), NET, set, 1)))
      local s = cjson.decode(signed({ v1, v2, v3 }))
      s.signatures[2].signature = s.signatures[1].signature
      assert.equal("bad_signature", (bt2c.consensus_check_set(cjson.encode(s), NET, set, 0)))
      local reversed = { entries[3], entries[2], entries[1] }
      assert.equal("malformed", (bt2c.consensus_check_set(signed({ v1, v2, v3 }, 1, reversed), NET, set, 0)))
      local wrong = { { nodeId = v1.id_hex, publicKey = hex(v2.pub) } }
      assert.equal("malformed", (bt2c.consensus_check_set(signed({ v1, v2, v3 }, 1, wrong), NET, set, 0)))
      assert.equal("unsigned", (bt2c.consensus_check_set(body, NET, set, 0)))
    end)
  end)
end)
