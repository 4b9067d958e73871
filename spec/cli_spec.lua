-- Functional: the bt2cd command line.
local H = require "helpers.node"

describe("bt2cd command line", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmtree(dir) end)

  it("prints its version and help", function()
    local code, out = H.run({ H.BT2CD, "--version" })
    assert.equal(0, code)
    assert.matches("^bt2cd %d+%.%d+%.%d+\n$", out)
    code, out = H.run({ H.BT2CD, "--help" })
    assert.equal(0, code)
    assert.matches("--check-config", out, 1, true)
    assert.matches("bt2cd console", out, 1, true)
  end)

  it("rejects unknown arguments with status 2", function()
    local code, _, err = H.run({ H.BT2CD, "--frobnicate" })
    assert.equal(2, code)
    assert.matches("unknown argument '--frobnicate'", err, 1, true)
    code, _, err = H.run({ H.BT2CD, "--log-level", "loud" })
    assert.equal(2, code)
    assert.matches("unknown log level 'loud'", err, 1, true)
  end)

  it("--check-config accepts the shipped configuration", function()
    local code, out = H.run({ H.BT2CD, "--check-config", "--config", H.SOURCE .. "/conf/bt2cd.lua" })
    assert.equal(0, code)
    assert.matches("bt2cd.lua: ok", out, 1, true)
  end)

  it("--check-config reports every problem with file:line and exits 1", function()
    local path = dir .. "/bad.lua"
    H.write_file(path, table.concat({
      "return {",
      "  port = 'eighty',",
      "  maxPeer = 10,",
      "  messageRelay = { relayMode = 'gossip' },",
      "}",
    }, "\n"))
    local code, out, err = H.run({ H.BT2CD, "--check-config", "--config", path })
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches(path .. ":2: ", err, 1, true)
    assert.matches("port", err, 1, true)
    assert.matches(path .. ":3: unknown key 'maxPeer' (did you mean 'maxPeers'?)", err, 1, true)
    assert.matches(path .. ":4: ", err, 1, true)
    assert.matches("relayMode", err, 1, true)
  end)

  it("does not start a node on a broken configuration", function()
    local path = dir .. "/bad.lua"
    H.write_file(path, "return { maxInbound = -1 }\n")
    local code, _, err = H.run({ H.BT2CD, "--config", path })
    assert.equal(1, code)
    assert.matches(path .. ":1: ", err, 1, true)
    assert.matches("maxInbound", err, 1, true)
  end)

  it("--check-policies accepts the shipped policies and refuses broken ones", function()
    local code, out = H.run({ H.BT2CD, "--check-policies", H.SOURCE .. "/policies" })
    assert.equal(0, code)
    assert.matches("policies: ok", out, 1, true)
    -- with no configuration file at all (every default)
    code, out = H.run({ H.BT2CD, "--check-policies", H.SOURCE .. "/policies" }, { cwd = dir })
    assert.equal(0, code)
    assert.matches("policies: ok", out, 1, true)

    local pdir = H.copy_policies(dir)
    H.write_file(pdir .. "/relay.lua", "local M = {}\nM.mode = 'everywhere'\nreturn M\n")
    local _, err
    code, _, err = H.run({ H.BT2CD, "--check-policies", pdir })
    assert.equal(1, code)
    assert.matches(pdir .. "/relay.lua:2: ", err, 1, true)

    H.write_file(pdir .. "/relay.lua", "return {\n")
    code, _, err = H.run({ H.BT2CD, "--check-policies", pdir })
    assert.equal(1, code)
    assert.matches("relay.lua:2:", err, 1, true)

    os.remove(pdir .. "/relay.lua")
    code, _, err = H.run({ H.BT2CD, "--check-policies", pdir })
    assert.equal(1, code)
    assert.matches("relay.lua", err, 1, true)
  end)
end)
