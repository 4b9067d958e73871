-- Functional: the console of a real bt2cd process.
local H = require "helpers.node"
local sys = H.sys

local function frame(kind, text)
  return string.format("%s %d\n%s", kind, #text, text)
end

-- Reads frames from a raw connection until a final one (ok/err/more).
local function read_reply(conn, timeout)
  local buf, frames = "", {}
  local deadline = sys.now() + (timeout or 10)
  while sys.now() < deadline do
    local kind, len, rest = buf:match("^(%a+) (%d+)\n(.*)$")
    if kind and #rest >= tonumber(len) then
      frames[#frames + 1] = { kind = kind, body = rest:sub(1, tonumber(len)) }
      buf = rest:sub(tonumber(len) + 1)
      if kind ~= "out" then return frames end
    else
      local data = conn:recv(deadline - sys.now())
      if not data then return frames, "connection: closed or timed out" end
      buf = buf .. data
    end
  end
  return frames, "timeout"
end

describe("console", function()
  local node
  setup(function()
    node = H.start({ config = { consoleTimeout = 500 } })
  end)
  teardown(function() H.cleanup() end)

  it("evaluates expressions and prints results", function()
    local code, out, err = node:console("1 + 1")
    assert.equal(0, code)
    assert.equal("2\n", out)
    assert.equal("", err)
    code, out = node:console("return 'a', 2, {x = 1, 3}")
    assert.equal(0, code)
    assert.equal("a\t2\t{ 3, x = 1 }\n", out)
  end)

  it("runs statements, and print goes to the caller", function()
    local code, out = node:console("local t = {} for i = 1, 3 do t[i] = i * i end print('sq', t[3])")
    assert.equal(0, code)
    assert.equal("sq\t9\n", out)
    assert.equal(0, node:count_log("event=lua_print"))
  end)

  it("reports errors with their text and exit status 1", function()
    local code, out, err = node:console("error('boom here')")
    local _
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^console:1: boom here\n", err)
    code, _, err = node:console("local x = ")
    assert.equal(1, code)
    assert.matches("console:1: unexpected symbol near <eof>", err, 1, true)
    code, _, err = node:console("return nosuch.field")
    assert.equal(1, code)
    assert.matches("attempt to index a nil value (global 'nosuch')", err, 1, true)
  end)

  it("gives one JSON document with --json", function()
    assert.same({ 1, "two", { a = { 1, 2 } } }, node:eval("return 1, 'two', {a = {1, 2}}"))
    local code, out = node:console("x_json = 1", true)
    assert.equal(0, code)
    assert.equal("null\n", out)
    code, out = node:console("return {}", true)
    assert.equal(0, code)
    assert.equal("[]\n", out)
    -- printing does not corrupt the document on stdout
    local err
    code, out, err = node:console("print('noise') return {ok = true}", true)
    assert.equal(0, code)
    assert.equal('{"ok":true}\n', out)
    assert.equal("noise\n", err)
  end)

  it("keeps multi-line input until the chunk is complete", function()
    local code, out = H.run({ H.BT2CD, "console", "--socket", node.socket },
      { stdin = "function sq(x)\n  return x * x\nend\nsq(7)\nfor i = 1, 2 do\nprint(i)\nend\n" })
    assert.equal(0, code)
    assert.equal("49\n1\n2\n", out)
  end)

  it("shares state between sessions", function()
    assert.equal(0, (node:console("shared_value = 41")))
    local _, out = node:console("shared_value = shared_value + 1 return shared_value")
    assert.equal("42\n", out)
    local _, again = node:console("return shared_value")
    assert.equal("42\n", again)
  end)

  it("serves two clients at once", function()
    local a = assert(sys.unix_connect(node.socket))
    local b = assert(sys.unix_connect(node.socket))
    a:send(frame("line", "local_to_a = 'A'"))
    b:send(frame("line", "for i = 1, 2 do"))
    local ra = read_reply(a)
    local rb = read_reply(b)
    assert.equal("ok", ra[#ra].kind)
    assert.equal("more", rb[#rb].kind)
    b:send(frame("line", "end return local_to_a"))
    rb = read_reply(b)
    assert.equal("ok", rb[#rb].kind)
    assert.equal("A", rb[#rb].body)
    a:send(frame("eval", "return 'still here'"))
    ra = read_reply(a)
    assert.equal("still here", ra[#ra].body)
    a:close()
    b:close()
  end)

  it("cuts off a runaway command at its budget and keeps serving", function()
    local t0 = sys.now()
    local code, _, err = node:console("while true do end")
    local took = sys.now() - t0
    assert.equal(1, code)
    assert.matches("exceeded its time budget of 500 ms", err, 1, true)
    assert.is_true(took < 3, "took " .. took .. " s")
    -- a pcall inside the command cannot swallow the budget
    t0 = sys.now()
    code, _, err = node:console("while true do pcall(function() while true do end end) end")
    assert.equal(1, code)
    assert.matches("time budget", err, 1, true)
    assert.is_true(sys.now() - t0 < 3)
    -- nor can a coroutine created in an earlier command
    assert.equal(0, (node:console("co = coroutine.wrap(function() while true do end end)")))
    code, _, err = node:console("co()")
    assert.equal(1, code)
    assert.matches("time budget", err, 1, true)
    local _, out = node:console("return 'alive'")
    assert.equal("alive\n", out)
  end)

  it("refuses os.exit", function()
    local code, _, err = node:console("os.exit(3)")
    assert.equal(1, code)
    assert.matches("os.exit is disabled", err, 1, true)
    assert.is_true(sys.alive(node.pid))
  end)

  it("echoes every command to the log", function()
    node:console("return 'echo-me-1234'")
    assert.truthy(node:wait_log("event=console_command", 2))
    assert.truthy(node:log():find('chunk="return \'echo-me-1234\'"', 1, true))
  end)

  it("answers a malformed request with an error and closes", function()
    local c = assert(sys.unix_connect(node.socket))
    c:send("hello there\n")
    local frames = read_reply(c)
    assert.equal("err", frames[1].kind)
    assert.matches("malformed request", frames[1].body, 1, true)
    local data, why = c:recv(2)
    assert.is_nil(data)
    assert.equal("closed", why)
    c:close()
    assert.equal(0, (node:console("return 1")))
  end)

  it("limits a request's size", function()
    local c = assert(sys.unix_connect(node.socket))
    c:send("eval 999999999\n")
    local frames = read_reply(c)
    assert.equal("err", frames[1].kind)
    assert.matches("too large", frames[1].body, 1, true)
    c:close()
  end)

  it("is a 0600 socket that other users cannot use", function()
    local st = sys.stat(node.socket)
    assert.equal("socket", st.type)
    assert.equal(tonumber("600", 8), st.mode)
    if sys.getuid() ~= 0 then
      pending("needs root to act as another user")
      return
    end
    -- let the other user reach the socket file, so only its own mode stops it
    assert.is_true(sys.chmod(node.dir, tonumber("711", 8)))
    local ok, why = sys.unix_probe_as(65534, node.socket, frame("eval", "return 1"))
    assert.is_false(ok)
    assert.matches("Permission denied", why, 1, true)
    -- even if the file mode is loosened, the node checks who is calling
    assert.is_true(sys.chmod(node.socket, tonumber("666", 8)))
    ok, why = sys.unix_probe_as(65534, node.socket, frame("eval", "return 1"))
    sys.chmod(node.socket, tonumber("600", 8))
    sys.chmod(node.dir, tonumber("700", 8))
    assert.is_true(ok)
    assert.matches("permission denied", why, 1, true)
    assert.truthy(node:wait_log("event=console_refused uid=65534", 2))
  end)

  it("fails cleanly when no node listens", function()
    local code, _, err = H.run({ H.BT2CD, "console", "--socket", node.dir .. "/nope.sock", "-e", "1" })
    assert.equal(2, code)
    assert.matches("cannot connect to", err, 1, true)
  end)
end)
