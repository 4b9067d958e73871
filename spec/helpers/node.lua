-- helpers/node: start real bt2cd processes in hermetic temp directories and
-- talk to them through their consoles (after Neovim's testnvim.lua).
local sys = require "bt2c"
local cjson = require "cjson"

local M = {}

M.BT2CD = assert(os.getenv("BT2CD"), "BT2CD must point at the bt2cd binary (run through ctest)")
M.SOURCE = assert(os.getenv("BT2C_SOURCE"), "BT2C_SOURCE must point at the source tree")
M.sys = sys

local started = {}

function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = M.shell_quote

function M.sh(cmd)
  local ok, how, code = os.execute(cmd)
  return ok and 0 or (how == "exit" and code or 128 + code)
end

-- Runs a command, returns its exit code, stdout and stderr.
function M.run(argv, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = q(a) end
  local cmd = table.concat(parts, " ") .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err")
  if opts.stdin then
    M.write_file(dir .. "/in", opts.stdin)
    cmd = cmd .. " <" .. q(dir .. "/in")
  else
    cmd = cmd .. " </dev/null"
  end
  if opts.cwd then cmd = "cd " .. q(opts.cwd) .. " && " .. cmd end
  local code = M.sh(cmd)
  local out, err = M.read_file(dir .. "/out"), M.read_file(dir .. "/err")
  M.rmtree(dir)
  return code, out, err
end

function M.tmpdir()
  local p = os.tmpname() -- creates a file; a directory goes in its place
  os.remove(p)
  assert(M.sh("mkdir -m 700 " .. q(p)) == 0)
  return p
end

function M.rmtree(p)
  if p and p:match("^/tmp/") then M.sh("rm -rf " .. q(p)) end
end

function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.copy_policies(dir)
  assert(M.sh("cp -r " .. q(M.SOURCE .. "/policies") .. " " .. q(dir .. "/policies")) == 0)
  return dir .. "/policies"
end

-- Waits until fn() returns a true value; returns it, or nil after timeout.
function M.wait_for(fn, timeout, interval)
  local deadline = sys.now() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    sys.sleep(interval or 0.05)
  until sys.now() > deadline
  return nil
end

local function lua_literal(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    local key = type(k) == "number" and "" or (k .. " = ")
    out[#out + 1] = indent .. "  " .. key .. lua_literal(v[k], indent .. "  ")
  end
  return "{\n" .. table.concat(out, ",\n") .. "\n" .. indent .. "}"
end
M.lua_literal = lua_literal

local Node = {}
Node.__index = Node

-- Starts a node. opts.config: table of config keys merged over the test
-- defaults; opts.policies: directory to use (default: a copy of policies/);
-- opts.args: extra command line arguments; opts.wait = false to not wait for
-- the console.
function M.start(opts)
  opts = opts or {}
  local dir = opts.dir or M.tmpdir()
  local conf = {
    port = sys.free_port(),
    host = "127.0.0.1",
    dataDir = "data",
    policyDir = opts.policies or M.copy_policies(dir),
    consoleSocket = dir .. "/console.sock",
    logLevel = "info",
    natTraversal = { stunServers = {}, turnServers = {} },
  }
  for k, v in pairs(opts.config or {}) do conf[k] = v end
  local conf_path = dir .. "/bt2cd.lua"
  M.write_file(conf_path, "return " .. lua_literal(conf) .. "\n")
  local argv = { M.BT2CD, "--config", conf_path }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local node = setmetatable({
    dir = dir,
    conf = conf,
    conf_path = conf_path,
    socket = conf.consoleSocket,
    log_path = dir .. "/node.log",
    port = conf.port,
  }, Node)
  node.pid = sys.spawn({ argv = argv, stderr = node.log_path, stdout = dir .. "/stdout.log" })
  started[#started + 1] = node
  if opts.wait ~= false then
    local up = M.wait_for(function()
      if not sys.alive(node.pid) then return "dead" end
      return sys.stat(node.socket) and node:try_eval("return 1") and "up"
    end, 20)
    if up ~= "up" then
      local log = node:log()
      node:kill("KILL")
      error("bt2cd did not start (" .. tostring(up) .. "):\n" .. log, 2)
    end
  end
  return node
end

function Node:log()
  return M.read_file(self.log_path) or ""
end

-- Waits until the log contains `pattern` (a plain string); returns the log.
function Node:wait_log(pattern, timeout)
  return M.wait_for(function()
    local log = self:log()
    return log:find(pattern, 1, true) and log
  end, timeout or 10)
end

function Node:count_log(pattern)
  local n = 0
  for _ in self:log():gmatch(pattern) do n = n + 1 end
  return n
end

-- Runs `bt2cd console -e chunk`; returns exit code, stdout, stderr.
function Node:console(chunk, json)
  local argv = { M.BT2CD, "console", "--socket", self.socket, "-e", chunk }
  if json then argv[#argv + 1] = "--json" end
  return M.run(argv)
end

function Node:try_eval(chunk)
  local conn = sys.unix_connect(self.socket)
  if not conn then return nil end
  conn:send(string.format("eval %d\n%s", #chunk, chunk))
  local reply = conn:recv(2)
  conn:close()
  return reply and reply:match("^ok ")
end

-- Evaluates chunk and returns its results decoded from JSON; raises with the
-- node's error text if the chunk failed.
function Node:eval(chunk)
  local code, out, err = self:console(chunk, true)
  if code ~= 0 then error("console error (" .. code .. "): " .. err, 2) end
  return cjson.decode(out)
end

function Node:signal(sig)
  return sys.kill(self.pid, sig)
end

function Node:kill(sig)
  sys.kill(self.pid, sig or "KILL")
  return sys.wait(self.pid, 10)
end

-- SIGTERM, then the exit status (SIGKILL after the timeout).
function Node:stop(timeout)
  if self.status then return self.status end
  sys.kill(self.pid, "TERM")
  local st = sys.wait(self.pid, timeout or 15)
  if not st then
    sys.kill(self.pid, "KILL")
    st = sys.wait(self.pid, 5)
    st.killed = true
  end
  self.status = st
  return st
end

-- Sanitizer reports in the log fail the test that caused them.
function Node:sanitizer_report()
  local log = self:log()
  return log:match("(ERROR: AddressSanitizer.-\n)") or log:match("([^\n]*runtime error:[^\n]*)")
    or log:match("(ERROR: LeakSanitizer.-\n)")
end

-- Small look-ups the network specs share.
function M.url(node) return "ws://127.0.0.1:" .. node.port end

function M.id_of(node)
  node.id = node.id or node:eval("return network.get_network_status().nodeId")
  return node.id
end

function M.peer_ids(node)
  return node:eval([[local t = {} for _, p in ipairs(network.get_peers()) do t[#t + 1] = p.id end
    return t]])
end

-- Stops every node started so far and removes their directories.
function M.cleanup()
  local reports = {}
  for _, node in ipairs(started) do
    node:stop()
    local r = node:sanitizer_report()
    if r then reports[#reports + 1] = node.log_path .. ": " .. r end
    if not os.getenv("BT2C_KEEP") then M.rmtree(node.dir) end
  end
  started = {}
  assert(#reports == 0, table.concat(reports, "\n"))
end

return M
