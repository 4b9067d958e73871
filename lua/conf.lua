-- conf: the configuration schema, evaluation of the file, and its checks.
--
-- Runs in a temporary trusted state that src/conf.c creates (standard
-- libraries, a memory cap) and throws away. conf.c calls M.load and copies
-- the checked table into struct conf; nothing here touches the node.
--
-- The schema is data (M.schema): the seed's NetworkManager options at the top
-- level, its peerScoring / natTraversal / messageRelay sections, and the
-- node-level keys of the design contract. Each key has a type, a default and
-- a range; docs/CONFIG.md documents the same table for operators.
local lines_mod = require("conf_lines")

local M = {}

local join = lines_mod.join
local INT_MAX = 2147483647
local UNIX_PATH_MAX = 107 -- sizeof(sun_path) - 1
M.MAX_ERRORS = 100 -- reported; the rest are counted
local KEEP_ERRORS = 1000 -- stored before sorting, so a huge file cannot flood memory

---------------------------------------------------------------------------
-- Rendering values

-- A number as Lua source that reads back as the same value and subtype.
local function number_text(v)
  if math.type(v) == "integer" then
    -- "-9223372036854775808" would read back as a float
    if v == math.mininteger then return "(-9223372036854775807-1)" end
    return ("%d"):format(v)
  end
  if v ~= v then return "(0/0)" end
  if v == math.huge then return "1e999" end
  if v == -math.huge then return "-1e999" end
  local s
  for _, f in ipairs({ "%.15g", "%.16g", "%.17g" }) do
    s = f:format(v)
    if tonumber(s) == v then break end
  end
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end
M.number_text = number_text

local function quote(s)
  return (("%q"):format(s):gsub("\\\n", "\\n"))
end

-- A value as error messages show it after "got".
local function show(v)
  local t = type(v)
  if t == "string" then
    if #v > 60 then v = v:sub(1, 57) .. "..." end
    return quote(v)
  elseif t == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return number_text(v)
  elseif t == "nil" then
    return "nothing"
  elseif t == "boolean" then
    return tostring(v)
  end
  return "a " .. t
end
M.show = show

---------------------------------------------------------------------------
-- Suggestions ("did you mean")

-- Optimal string alignment distance (edits, with adjacent swaps counting 1).
local function distance(a, b)
  local la, lb = #a, #b
  local prev2, prev = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[lb]
end

-- The closest of names to word, if close enough to be a likely typo.
local function closest(word, names)
  local w = word:lower()
  local limit = #w < 4 and 1 or (#w < 9 and 2 or 3)
  local best, best_d
  for _, name in ipairs(names) do
    local d = distance(w, name:lower())
    if d <= limit and (not best_d or d < best_d) then best, best_d = name, d end
  end
  return best
end
M.closest = closest

---------------------------------------------------------------------------
-- Hosts and URLs: each returns nil when fine, or the reason it is not.

local function split(s, sep)
  local out = {}
  for item in (s .. sep):gmatch("(.-)" .. sep:gsub("%p", "%%%0")) do out[#out + 1] = item end
  return out
end

local function ipv4_ok(s)
  local parts = split(s, ".")
  if #parts ~= 4 then return false end
  for _, p in ipairs(parts) do
    if not p:match("^%d%d?%d?$") or tonumber(p) > 255 then return false end
  end
  return true
end

local function ipv6_ok(s)
  if not s:match("^[%x:%.]+$") then return false end
  local function groups(part, last)
    if part == "" then return 0 end
    local items, n = split(part, ":"), 0
    for i, g in ipairs(items) do
      if last and i == #items and g:find(".", 1, true) then
        if not ipv4_ok(g) then return nil end
        n = n + 2
      elseif g:match("^%x%x?%x?%x?$") then
        n = n + 1
      else
        return nil
      end
    end
    return n
  end
  local head, tail = s:match("^(.-)::(.*)$")
  if head then
    if tail:find("::", 1, true) then return false end
    local a, b = groups(head, false), groups(tail, true)
    return a ~= nil and b ~= nil and a + b <= 7
  end
  return groups(s, true) == 8
end

local function host_reason(h)
  if h == "" then return "the host is empty" end
  if h:sub(1, 1) == "[" then
    if h:sub(-1) ~= "]" or not ipv6_ok(h:sub(2, -2)) then
      return ("%s is not a valid [IPv6] address"):format(h)
    end
    return nil
  end
  if h:find(":", 1, true) then
    if not ipv6_ok(h) then return ("%s is not a valid IPv6 address"):format(h) end
    return nil
  end
  if h:match("^[%d%.]+$") then
    if not ipv4_ok(h) then return ("%s is not a valid IPv4 address"):format(h) end
    return nil
  end
  if #h > 253 then return "the host name is longer than 253 bytes" end
  for _, label in ipairs(split(h, ".")) do
    if not (#label <= 63 and (label:match("^[%w_]$") or label:match("^[%w_][%w_%-]*[%w_]$"))) then
      return ("%s is not a valid host name"):format(quote(h))
    end
  end
  return nil
end
M.host_reason = host_reason

-- "host[:port]" (IPv6 in brackets); port required when need_port.
local function hostport_reason(s, need_port)
  local host, port
  if s:sub(1, 1) == "[" then
    local close = s:find("]", 1, true)
    if not close then return "an IPv6 address must end with ']'" end
    host = s:sub(1, close)
    local after = s:sub(close + 1)
    if after:sub(1, 1) == ":" then
      port = after:sub(2)
    elseif after ~= "" then
      return ("unexpected %s after the host"):format(quote(after))
    end
  else
    host, port = s:match("^([^:]*):(.*)$")
    if not host then host = s end
  end
  local why = host_reason(host)
  if why then return why end
  if port == nil then return need_port and "the port is missing" or nil end
  if not port:match("^%d+$") then return ("the port must be a number (found %s)"):format(quote(port)) end
  local n = tonumber(port)
  if #port > 5 or n < 1 or n > 65535 then return ("port %s is not in 1..65535"):format(port) end
  return nil
end

local function peer_url_reason(u)
  local scheme, rest = u:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return "not a URL" end
  if scheme ~= "ws" and scheme ~= "wss" then return ("the scheme is %s, not ws or wss"):format(scheme) end
  return hostport_reason(rest, true)
end
M.peer_url_reason = peer_url_reason

local function stun_url_reason(u)
  local rest = u:match("^stun:(.*)$")
  if not rest then return "it must start with stun:" end
  return hostport_reason(rest, false)
end

local function turn_url_reason(u)
  local rest = u:match("^turns?:(.*)$")
  if not rest then return "it must start with turn: or turns:" end
  local hp, q = rest:match("^([^?]*)%?(.*)$")
  if hp then
    if q ~= "transport=udp" and q ~= "transport=tcp" then
      return "the only query allowed is ?transport=udp or ?transport=tcp"
    end
    rest = hp
  end
  return hostport_reason(rest, false)
end

---------------------------------------------------------------------------
-- Paths

-- Removes "." and ".." components and repeated slashes of an absolute path.
local function normalize_path(p)
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return "/" .. table.concat(parts, "/")
end

local function resolve(dir, p)
  if p:sub(1, 1) == "/" then return normalize_path(p) end
  return normalize_path(dir .. "/" .. p)
end
M.resolve = resolve

---------------------------------------------------------------------------
-- Schema nodes. Every node has a kind, a default (nil: optional or
-- required) and `expect`, the phrase after "must be".

local function int(default, min, max, limit)
  local expect
  if max then
    expect = ("an integer in %d..%d"):format(min, max)
  elseif min == 1 then
    expect = "an integer > 0"
  else
    expect = ("an integer >= %d"):format(min)
  end
  -- limit: the C type's bound, not shown unless crossed
  return { kind = "int", default = default, min = min, max = max or limit or INT_MAX,
           expect = expect }
end

local function num(default, min, max, open_min)
  local fmt = open_min and "a number in (%s, %s]" or "a number in [%s, %s]"
  return { kind = "num", default = default, min = min, max = max, open_min = open_min,
           expect = fmt:format(number_text(min), number_text(max)) }
end

local function enum(default, values)
  local quoted = {}
  for i, v in ipairs(values) do quoted[i] = quote(v) end
  local expect = table.concat(quoted, ", ", 1, #quoted - 1) .. " or " .. quoted[#quoted]
  local set = {}
  for _, v in ipairs(values) do set[v] = true end
  return { kind = "str", default = default, enum = values, set = set, expect = expect }
end

-- A string checked by validate(s) -> nil or reason.
local function str(default, expect, validate, required)
  return { kind = "str", default = default, expect = expect, validate = validate,
           required = required }
end

local function bounded(maxlen)
  return function(s)
    if s == "" then return "it is empty" end
    if #s > maxlen then return ("it is %d bytes long, more than %d"):format(#s, maxlen) end
    return nil
  end
end

local function bool(default)
  return { kind = "bool", default = default, expect = "true or false" }
end

local function file_path(default)
  return { kind = "path", default = default, expect = "a path (a non-empty string)" }
end

local function list(item, max, default, what)
  return { kind = "list", item = item, max = max, default = default,
           expect = "a list of " .. what }
end

-- fields: { {name, node}, ... } in documentation order.
local function section(fields, post, extra)
  local index, names = {}, {}
  for i, f in ipairs(fields) do
    index[f[1]] = f[2]
    names[i] = f[1]
  end
  return { kind = "section", fields = fields, index = index, names = names, post = post,
           extra = extra, expect = "a table" }
end

---------------------------------------------------------------------------
-- Checking

local Ctx = {}
Ctx.__index = Ctx

local function new_ctx(path, dir)
  return setmetatable({ path = path, dir = dir, lines = {}, return_line = 1, errors = {},
                        nerr = 0 }, Ctx)
end

local function child(at, k)
  return { path = join(at.path, k), up = at }
end

-- The line for a problem at `at` (or the first of a list of places that is
-- written in the file), else its nearest written ancestor, else `return`.
function Ctx:line_of(at)
  if at[1] then
    for _, a in ipairs(at) do
      if self.lines[a.path] then return self.lines[a.path] end
    end
    at = at[1]
  end
  local a = at
  while a do
    if self.lines[a.path] then return self.lines[a.path] end
    a = a.up
  end
  return self.return_line
end

function Ctx:add(line, msg)
  self.nerr = self.nerr + 1
  if #self.errors < KEEP_ERRORS then
    self.errors[#self.errors + 1] = { line = line, msg = msg }
  end
end

function Ctx:err(at, fmt, ...)
  self:add(self:line_of(at), fmt:format(...))
end

-- "file:line: message" strings, in file order.
function Ctx:messages()
  table.sort(self.errors, function(a, b)
    if a.line ~= b.line then return a.line < b.line end
    return a.msg < b.msg
  end)
  local out = {}
  for i = 1, math.min(#self.errors, M.MAX_ERRORS) do
    local e = self.errors[i]
    if self.path then
      out[i] = ("%s:%d: %s"):format(self.path, e.line, e.msg)
    else
      out[i] = "(defaults): " .. e.msg
    end
  end
  if self.nerr > #out then
    out[#out + 1] = ("%s: %d more problems not shown"):format(self.path or "(defaults)",
                                                             self.nerr - #out)
  end
  return out
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = deep_copy(x) end
  return t
end

local check -- forward

local K = {}

function K.int(n, v, at, ctx)
  if v == nil then return n.default end
  if math.type(v) == "integer" and v >= n.min and v <= n.max then return v end
  local hint = ""
  local iv = math.type(v) == "float" and math.tointeger(v)
  if iv and iv >= n.min and iv <= n.max then hint = (", a float: write %d"):format(iv) end
  if math.type(v) == "integer" and v > n.max and not n.expect:find("..", 1, true) then
    ctx:err(at, "%s must be %s and at most %d (got %s)", at.path, n.expect, n.max, show(v))
  else
    ctx:err(at, "%s must be %s (got %s%s)", at.path, n.expect, show(v), hint)
  end
  return nil
end

function K.num(n, v, at, ctx)
  if v == nil then return n.default end
  if type(v) == "number" and v <= n.max and (v > n.min or (not n.open_min and v == n.min)) then
    return v
  end
  ctx:err(at, "%s must be %s (got %s)", at.path, n.expect, show(v))
  return nil
end

function K.str(n, v, at, ctx)
  if v == nil then
    if n.required then ctx:err(at, "%s is required (%s)", at.path, n.expect) end
    return n.default
  end
  if type(v) ~= "string" then
    ctx:err(at, "%s must be %s (got %s)", at.path, n.expect, show(v))
    return nil
  end
  if n.enum then
    if n.set[v] then return v end
    local near = closest(v, n.enum)
    ctx:err(at, "%s must be %s (got %s%s)", at.path, n.expect, show(v),
            near and ("; did you mean %s?"):format(quote(near)) or "")
    return nil
  end
  local why = n.validate and n.validate(v)
  if why then
    ctx:err(at, "%s must be %s (got %s: %s)", at.path, n.expect, show(v), why)
    return nil
  end
  return v
end

function K.bool(n, v, at, ctx)
  if v == nil then return n.default end
  if type(v) == "boolean" then return v end
  ctx:err(at, "%s must be %s (got %s)", at.path, n.expect, show(v))
  return nil
end

function K.path(n, v, at, ctx)
  if v == nil then return n.default and resolve(ctx.dir, n.default) end
  if type(v) ~= "string" or v == "" or v:find("\0", 1, true) then
    ctx:err(at, "%s must be %s (got %s)", at.path, n.expect, show(v))
    return nil
  end
  return resolve(ctx.dir, v)
end

function K.list(n, v, at, ctx)
  if v == nil then return deep_copy(n.default) end
  if type(v) ~= "table" then
    ctx:err(at, "%s must be %s (got %s)", at.path, n.expect, show(v))
    return nil
  end
  local count, top, ok = 0, 0, true
  for k in pairs(v) do
    if math.type(k) == "integer" and k >= 1 then
      count = count + 1
      if k > top then top = k end
    else
      local c = child(at, k)
      ctx:err(c, "unknown key '%s' (%s is a list)", c.path, at.path)
      ok = false
    end
  end
  if count ~= top then
    local i = 1
    while v[i] ~= nil do i = i + 1 end
    ctx:err(at, "%s must be a list without holes (%s[%d] is nil)", at.path, at.path, i)
    return nil
  end
  if count > n.max then
    ctx:err(at, "%s has %d entries (at most %d)", at.path, count, n.max)
    return nil
  end
  local out = {}
  for i = 1, count do
    out[i] = check(n.item, v[i], child(at, i), ctx)
    if out[i] == nil then ok = false end
  end
  return ok and out or nil
end

-- Every path in the schema, for "did you mean 'peerScoring.decayFactor'?"
-- when a known key is written in the wrong section.
local all_paths -- name -> first full path, filled once the schema exists

local function unknown_key(n, k, at, ctx)
  local c = child(at, k)
  local hint = ""
  if type(k) == "string" then
    local near = closest(k, n.names)
    if near then
      hint = (" (did you mean '%s'?)"):format(join(at.path, near))
    elseif all_paths[k:lower()] and all_paths[k:lower()] ~= c.path then
      hint = (" (did you mean '%s'?)"):format(all_paths[k:lower()])
    end
  end
  ctx:err(c, "unknown key '%s'%s", c.path, hint)
end

function K.section(n, v, at, ctx)
  if v == nil then
    v = {}
  elseif type(v) ~= "table" then
    ctx:err(at, "%s must be %s (got %s)", at.path, n.expect, show(v))
    return nil
  end
  local out = {}
  local ok = true
  for k, x in pairs(v) do
    if not (type(k) == "string" and n.index[k]) then
      if n.extra and type(k) == "string" then
        local val = n.extra(k, x, child(at, k), ctx)
        if val == nil then ok = false end
        out[k] = val
      else
        unknown_key(n, k, at, ctx)
        ok = false
      end
    end
  end
  for _, f in ipairs(n.fields) do
    local name, node = f[1], f[2]
    local val = check(node, v[name], child(at, name), ctx)
    if val == nil and v[name] ~= nil then ok = false end
    out[name] = val
  end
  if not ok then return nil end
  if n.post then n.post(out, v, at, ctx) end
  return out
end

function check(n, v, at, ctx)
  return K[n.kind](n, v, at, ctx)
end

---------------------------------------------------------------------------
-- Cross-field checks

local CATEGORIES = { "latency", "uptime", "blockPropagation", "transactionRelay",
                     "validatorStatus", "behavior" }
M.CATEGORIES = CATEGORIES

local function weights_post(out, given, at, ctx)
  local sum = 0
  for _, c in ipairs(CATEGORIES) do sum = sum + out[c] end
  if math.abs(sum - 1) > 0.001 then
    local defaulted = {}
    for _, c in ipairs(CATEGORIES) do
      if given[c] == nil then defaulted[#defaulted + 1] = c end
    end
    local note = ""
    if #defaulted > 0 and #defaulted < #CATEGORIES then
      note = ", counting the defaults of " .. table.concat(defaulted, ", ")
    end
    ctx:err(at, "%s must sum to 1 (they sum to %s%s)", at.path, ("%.6g"):format(sum), note)
  end
end

local function thresholds_post(out, _, at, ctx)
  if not (out.banned < out.neutral and out.neutral < out.trusted) then
    ctx:err(at, "%s must be ordered banned < neutral < trusted (got banned %s, neutral %s, trusted %s)",
            at.path, show(out.banned), show(out.neutral), show(out.trusted))
  end
end

local function readable_reason(p)
  local f, msg = io.open(p, "rb")
  if not f then return "cannot read " .. msg end
  local data, err = f:read(0)
  f:close()
  if err then return ("cannot read %s: %s"):format(p, err) end
  if data == nil then return ("%s is empty"):format(p) end
  return nil
end

local function tls_post(out, given, at, ctx)
  for _, pair in ipairs({ { "cert", "key" }, { "key", "cert" } }) do
    local have, other = pair[1], pair[2]
    if out[have] and given[other] == nil then
      ctx:err(child(at, have), "%s.%s must be set too: TLS needs both cert and key, or neither",
              at.path, other)
    end
  end
  for _, k in ipairs({ "cert", "key" }) do
    local why = out[k] and readable_reason(out[k])
    if why then ctx:err(child(at, k), "%s.%s: %s", at.path, k, why) end
  end
end

local function root_post(out, given, at, ctx)
  for _, k in ipairs({ "maxInbound", "maxOutbound" }) do
    if out[k] > out.maxPeers then
      ctx:err({ child(at, k), child(at, "maxPeers") }, "%s (%d) must not exceed maxPeers (%d)",
              k, out[k], out.maxPeers)
    end
  end
  if given.consoleSocket == nil then
    out.consoleSocket = resolve(out.dataDir, "console.sock")
  end
  if #out.consoleSocket > UNIX_PATH_MAX then
    local what = given.consoleSocket == nil and "consoleSocket (by default dataDir/console.sock)"
      or "consoleSocket"
    ctx:err({ child(at, "consoleSocket"), child(at, "dataDir") },
            "%s is %d bytes long, more than a Unix socket path can hold (%d): %s; "
            .. "set consoleSocket to a shorter path",
            what, #out.consoleSocket, UNIX_PATH_MAX, out.consoleSocket)
  end
end

local MAX_META_EXTRA = 16
local function metadata_extra(k, v, at, ctx)
  ctx.meta_extra = (ctx.meta_extra or 0) + 1
  if ctx.meta_extra == MAX_META_EXTRA + 1 then
    ctx:err(at.up, "%s has more than %d extra keys", at.up.path, MAX_META_EXTRA)
  end
  if #k > 64 then
    ctx:err(at, "%s: the key is longer than 64 bytes", at.path)
    return nil
  end
  local t = type(v)
  if (t == "string" and #v <= 256) or t == "boolean" or (math.type(v) == "integer")
     or (t == "number" and v == v and v ~= math.huge and v ~= -math.huge) then
    return v
  end
  ctx:err(at, "%s must be a string of at most 256 bytes, a finite number or a boolean (got %s)",
          at.path, show(v))
  return nil
end

---------------------------------------------------------------------------
-- The schema

local peer = str(nil, "a ws://host:port or wss://host:port URL", peer_url_reason)
local host = str(nil, "a host name or an IP address", host_reason)

local function host_default(default)
  return str(default, host.expect, host_reason)
end

M.schema = section({
  -- NetworkManager (seed)
  { "port", int(8765, 0, 65535) },
  { "host", host_default("0.0.0.0") },
  { "maxPeers", int(50, 0) },
  { "maxInbound", int(25, 0) },
  { "maxOutbound", int(25, 0) },
  { "connectionTimeout", int(10000, 1) },
  { "handshakeTimeout", int(5000, 1) },
  { "pingInterval", int(30000, 1) },
  { "bootstrapPeers", list(peer, 256, {}, "ws:// or wss:// peer URLs") },
  { "persistentPeers", list(peer, 256, {}, "ws:// or wss:// peer URLs") },
  { "peerDiscoveryInterval", int(300000, 1) },
  { "nodeId", str(nil, "a string of 1..128 printable characters without spaces", function(s)
    if #s == 0 or #s > 128 or not s:match("^[\33-\126]+$") then return "not a node id" end
  end) },
  -- not in the seed: node ids (40 hex) of the validator set; a peer counts as
  -- a validator only when its handshake proved one of these keys
  { "validators", list(str(nil, "a node id: 40 lowercase hex characters", function(v)
    if not v:match("^" .. string.rep("[0-9a-f]", 40) .. "$") then return "not a node id" end
  end), 1024, {}, "node ids") },
  { "nodeMetadata", section({
    { "version", str("1.0.0", "a non-empty string of at most 64 bytes", bounded(64)) },
    { "isValidator", bool(false) },
  }, nil, metadata_extra) },
  -- PeerScoring (seed)
  { "peerScoring", section({
    { "decayPeriod", int(3600000, 1, nil, 2 ^ 53) },
    { "decayFactor", num(0.95, 0, 1, true) },
    { "historyLimit", int(100, 0, 100000) },
    { "weights", section({
      { "latency", num(0.2, 0, 1) },
      { "uptime", num(0.2, 0, 1) },
      { "blockPropagation", num(0.25, 0, 1) },
      { "transactionRelay", num(0.15, 0, 1) },
      { "validatorStatus", num(0.1, 0, 1) },
      { "behavior", num(0.1, 0, 1) },
    }, weights_post) },
    { "thresholds", section({
      { "trusted", num(75, -100, 100) },
      { "neutral", num(0, -100, 100) },
      { "banned", num(-50, -100, 100) },
    }, thresholds_post) },
  }) },
  -- NATTraversal (seed)
  { "natTraversal", section({
    { "stunServers", list(str(nil, 'a STUN URL "stun:host[:port]"', stun_url_reason), 16,
                          { "stun:stun.bt2c.network:3478", "stun:stun.l.google.com:19302" },
                          "stun:host[:port] URLs") },
    { "turnServers", list(section({
      { "urls", str(nil, 'a TURN URL "turn:host[:port]" or "turns:host[:port]"', turn_url_reason,
                    true) },
      { "username", str(nil, "a string of at most 256 bytes", bounded(256), true) },
      { "credential", str(nil, "a string of at most 256 bytes", bounded(256), true) },
    }), 16, { { urls = "turn:turn.bt2c.network:3478", username = "bt2c",
                credential = "bt2c-turn-credential" } }, "{urls, username, credential} tables") },
    { "preferredMethod", enum("stun", { "stun", "turn", "host" }) },
    { "candidatePreference", enum("srflx", { "host", "srflx", "relay", "priority" }) },
    -- not in the seed: STUN timing (RFC 8489 6.2.1 defaults)
    { "stunRto", int(500, 10, 60000) },
    { "stunRetransmissions", int(7, 1, 16) },
    { "stunRefreshInterval", int(300000, 1000, 86400000) },
  }) },
  -- MessageRelay (seed)
  { "messageRelay", section({
    { "maxRelayHops", int(3, 1, 32) },
    { "relayMode", enum("selective", { "flood", "selective", "validator_only" }) },
    { "relayThreshold", num(50, -100, 100) },
    { "messageExpiration", int(3600000, 1, nil, 2 ^ 53) },
    { "cleanupInterval", int(300000, 1, nil, 2 ^ 53) },
    -- not in the seed: how many message ids the duplicate filter holds
    { "seenCacheSize", int(524288, 1024, 16777216) },
  }) },
  -- Node-level keys (design contract)
  { "dataDir", file_path("./data") },
  { "policyDir", file_path("./policies") },
  { "consoleSocket", file_path(nil) },
  { "networkId", str("bt2c-mainnet", "1..64 letters, digits, '.', '_', ':' or '-'", function(s)
    if #s == 0 or #s > 64 or not s:match("^[%w._:%-]+$") then return "not a network id" end
  end) },
  { "metrics", section({
    { "host", host_default("127.0.0.1") },
    { "port", int(0, 0, 65535) },
  }) },
  { "tls", section({
    { "cert", file_path(nil) },
    { "key", file_path(nil) },
  }, tls_post) },
  { "logLevel", enum("info", { "debug", "info", "warn", "error" }) },
  { "maxMessageSize", int(1048576, 1024, 67108864) },
  { "consoleTimeout", int(5000, 1) },
  { "policyLimits", section({
    { "instructions", int(1000000, 1, 1000000000) },
    { "time", int(50, 1, 60000) },
    { "memory", int(16777216, 262144, 1073741824) },
    { "failures", int(5, 1) },
  }) },
}, root_post)

all_paths = {}
local function index_paths(n, prefix)
  for _, f in ipairs(n.fields) do
    local p = join(prefix, f[1])
    all_paths[f[1]:lower()] = all_paths[f[1]:lower()] or p
    if f[2].kind == "section" then index_paths(f[2], p) end
  end
end
index_paths(M.schema, "")

---------------------------------------------------------------------------
-- Evaluation

-- Lua abbreviates long chunk names ("...tail/conf.lua:3:"); errors must name
-- the path as given.
local function fix_chunkname(msg, path)
  if msg:sub(1, #path + 1) == path .. ":" then return msg end
  if msg:sub(1, 3) == "..." then
    for k = #path - 1, 1, -1 do
      if msg:sub(4, 4 + k) == path:sub(-k) .. ":" then return path .. msg:sub(4 + k) end
    end
  end
  return path .. ": " .. msg
end

-- Runs the file's text: text chunks only, an empty environment, no string
-- methods (pattern matching in C would escape the instruction count), under
-- an instruction budget; the memory cap is the state's allocator.
-- Returns true, value or false, "path: message".
function M.evaluate(text, path, opts)
  local chunk, err = load(text, "@" .. path, "t", {})
  if not chunk then return false, fix_chunkname(err, path) end
  local budget_msg = path .. ": configuration did not finish within its instruction budget"
  local memory_msg = ("%s: configuration did not finish within its memory limit (%d MiB)")
    :format(path, (opts.memory or 0) // (1024 * 1024))
  -- A coroutine of its own, so the count hook never fires in this code.
  local co = coroutine.create(chunk)
  local tripped = false
  debug.sethook(co, function()
    tripped = true
    error(budget_msg, 0)
  end, "", opts.instructions or 1000000)
  local smt = getmetatable("")
  local saved = smt.__index
  smt.__index = nil
  local ok, v = coroutine.resume(co)
  smt.__index = saved
  if ok then return true, v end
  if tripped then return false, budget_msg end
  if v == "not enough memory" then return false, memory_msg end
  if type(v) ~= "string" then return false, path .. ": configuration raised an error" end
  return false, fix_chunkname(v, path)
end

---------------------------------------------------------------------------
-- Serialization

local RESERVED = {}
for w in ([[and break do else elseif end false for function goto if in local
  nil not or repeat return then true until while]]):gmatch("%a+") do
  RESERVED[w] = true
end

local function serialize(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = ("%q"):format(v)
  elseif t == "number" then
    out[#out + 1] = number_text(v)
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "table" then
    local n = #v
    local keys, count = {}, 0
    for k in pairs(v) do
      count = count + 1
      if type(k) == "string" then keys[#keys + 1] = k end
    end
    out[#out + 1] = "{"
    if count == n then -- a sequence
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        serialize(v[i], out)
      end
    else
      assert(#keys == count, "serialize: mixed or non-string keys")
      table.sort(keys)
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        if k:match("^[%a_][%w_]*$") and not RESERVED[k] then
          out[#out + 1] = k .. "="
        else
          out[#out + 1] = "[" .. ("%q"):format(k) .. "]="
        end
        serialize(v[k], out)
      end
    end
    out[#out + 1] = "}"
  else
    error("serialize: cannot write a " .. t)
  end
end

-- A deterministic Lua constructor for v (sorted keys, %q strings,
-- round-trippable numbers).
function M.serialize(v)
  local out = {}
  serialize(v, out)
  return table.concat(out)
end

---------------------------------------------------------------------------
-- Entry point

-- load(text, path, dir, opts) -> config, normalized | nil, {"file:line: msg"}
-- text nil means no file: every default, relative paths against dir.
-- opts: instructions (budget), memory (the state's cap, for the message).
function M.load(text, path, dir, opts)
  opts = opts or {}
  local ctx = new_ctx(path, dir)
  local value = {}
  local dups = {}
  if text ~= nil then
    local ok, v = M.evaluate(text, path, opts)
    if not ok then return nil, { v } end
    local found, loc = pcall(lines_mod.locate, text)
    if found then
      ctx.lines = loc.lines or {}
      ctx.return_line = loc.return_line or loc.last_line
      dups = loc.dups
    end
    if type(v) ~= "table" then
      return nil, { ("%s:%d: the configuration must return a table (got %s)")
        :format(path, ctx.return_line, show(v)) }
    end
    value = v
  end
  local config = check(M.schema, value, { path = "" }, ctx)
  for _, d in ipairs(dups) do
    ctx:add(d.line, ("duplicate key '%s' (also set at line %d)"):format(d.path, d.first))
  end
  if ctx.nerr > 0 then return nil, ctx:messages() end
  return config, M.serialize(config)
end

return M
