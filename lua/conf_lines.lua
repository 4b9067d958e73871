-- conf_lines: where each key of a configuration file is written.
--
-- The checker in conf.lua sees only the evaluated table, which has no line
-- numbers; errors must still say "file:line". This module tokenizes the
-- file's source and follows the table constructor that the chunk returns,
-- mapping key paths ("peerScoring.weights.latency", "bootstrapPeers[2]") to
-- the line where the key (or, for list items, the value) is written.
--
-- It only runs on text that Lua has already compiled, so it can assume valid
-- syntax; on anything surprising it gives up quietly and the caller falls
-- back to the line of the `return`. It never evaluates the file.
local M = {}

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local
  nil not or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[w] = true
end

local SYMBOLS3 = { ["..."] = true }
local SYMBOLS2 = {
  ["=="] = true, ["~="] = true, ["<="] = true, [">="] = true, ["//"] = true,
  ["::"] = true, ["<<"] = true, [">>"] = true, [".."] = true,
}

-- Path of key k inside prefix, in the form error messages use.
function M.join(prefix, k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then
    return prefix == "" and k or prefix .. "." .. k
  elseif math.type(k) == "integer" then
    return prefix .. "[" .. k .. "]"
  elseif type(k) == "string" then
    return prefix .. "[" .. (("%q"):format(k):gsub("\\\n", "\\n")) .. "]"
  else
    return prefix .. "[" .. tostring(k) .. "]"
  end
end

---------------------------------------------------------------------------
-- Lexer: one current token (t, v, l) and one token of lookahead, kept in
-- fields rather than tables so a large file costs no garbage per token.
-- t is the symbol or keyword itself, or "<name>", "<string>", "<number>",
-- "<eof>"; v is the raw text; l its line.

local Lexer = {}
Lexer.__index = Lexer

-- Counts line breaks in s[i..j] the way Lua does ("\r\n" and "\n\r" are one).
local function count_lines(s, i, j)
  local n = 0
  local p = i
  while true do
    local e = s:find("[\r\n]", p)
    if not e or e > j then return n end
    n = n + 1
    local c, d = s:byte(e), s:byte(e + 1)
    if e + 1 <= j and (d == 10 or d == 13) and d ~= c then e = e + 1 end
    p = e + 1
  end
end

-- If a long bracket "[==[" opens at pos, returns its level and the position
-- just after it.
local function long_open(s, pos)
  if s:byte(pos) ~= 91 then return nil end
  local e = pos + 1
  while s:byte(e) == 61 do e = e + 1 end
  if s:byte(e) == 91 then return e - pos - 1, e + 1 end
  return nil
end

-- Skips a long string or comment whose content starts at pos; returns the
-- position after its closing bracket.
function Lexer:skip_long(pos, level)
  local close = "]" .. ("="):rep(level) .. "]"
  local s = self.s
  local a, b = s:find(close, pos, true)
  if not a then
    self.line = self.line + count_lines(s, pos, #s)
    return #s + 1
  end
  self.line = self.line + count_lines(s, pos, a - 1)
  return b + 1
end

function Lexer:scan()
  local s, pos = self.s, self.pos
  -- whitespace and comments
  while true do
    local c = s:byte(pos)
    if c == nil then
      self.pos = pos
      return "<eof>", nil, self.line
    elseif c == 10 or c == 13 then
      local d = s:byte(pos + 1)
      pos = ((d == 10 or d == 13) and d ~= c) and pos + 2 or pos + 1
      self.line = self.line + 1
    elseif c == 32 or c == 9 or c == 11 or c == 12 then
      pos = pos + 1
    elseif c == 45 and s:byte(pos + 1) == 45 then
      pos = pos + 2
      local level, start = long_open(s, pos)
      if level then
        pos = self:skip_long(start, level)
      else
        pos = s:find("[\r\n]", pos) or #s + 1
      end
    else
      break
    end
  end
  local line = self.line
  local c = s:byte(pos)
  -- names and keywords
  local name = s:match("^[%a_][%w_]*", pos)
  if name then
    self.pos = pos + #name
    return KEYWORDS[name] and name or "<name>", name, line
  end
  -- numbers (read greedily like Lua's read_numeral)
  if (c >= 48 and c <= 57) or (c == 46 and (s:byte(pos + 1) or 0) >= 48 and (s:byte(pos + 1) or 0) <= 57) then
    local p = pos
    local expo = "[Ee]"
    if s:sub(p, p + 1):lower() == "0x" then
      expo = "[Pp]"
      p = p + 2
    end
    while true do
      local ch = s:sub(p, p)
      if ch:match(expo) and s:sub(p + 1, p + 1):match("[%+%-]") then
        p = p + 2
      elseif ch ~= "" and ch:match("[%w%.]") then
        p = p + 1
      else
        break
      end
    end
    self.pos = p
    return "<number>", s:sub(pos, p - 1), line
  end
  -- short strings
  if c == 34 or c == 39 then
    local q = string.char(c)
    local p = pos + 1
    while true do
      local e = s:find("[\\\r\n" .. q .. "]", p)
      if not e then
        p = #s + 1
        break
      end
      local ch = s:byte(e)
      if ch == c then
        p = e + 1
        break
      elseif ch == 92 then
        local d = s:byte(e + 1)
        if d == 10 or d == 13 then
          local d2 = s:byte(e + 2)
          p = ((d2 == 10 or d2 == 13) and d2 ~= d) and e + 3 or e + 2
          self.line = self.line + 1
        elseif d == 122 then -- \z skips the whitespace after it, newlines too
          local ws = s:match("^[ \t\r\n\v\f]*", e + 2)
          self.line = self.line + count_lines(s, e + 2, e + 1 + #ws)
          p = e + 2 + #ws
        else
          p = e + 2
        end
      else
        p = e -- unfinished string (cannot happen in compiled text)
        break
      end
    end
    self.pos = p
    return "<string>", s:sub(pos, p - 1), line
  end
  -- long strings
  local level, start = long_open(s, pos)
  if level then
    local p = self:skip_long(start, level)
    self.pos = p
    return "<string>", s:sub(pos, p - 1), line
  end
  -- symbols
  local three, two = s:sub(pos, pos + 2), s:sub(pos, pos + 1)
  if SYMBOLS3[three] then
    self.pos = pos + 3
    return three, three, line
  elseif SYMBOLS2[two] then
    self.pos = pos + 2
    return two, two, line
  end
  self.pos = pos + 1
  local ch = s:sub(pos, pos)
  return ch, ch, line
end

function Lexer:advance()
  if self.has_ahead then
    self.t, self.v, self.l = self.at, self.av, self.al
    self.has_ahead = false
  else
    self.t, self.v, self.l = self:scan()
  end
end

function Lexer:peek()
  if not self.has_ahead then
    self.at, self.av, self.al = self:scan()
    self.has_ahead = true
  end
  return self.at, self.av
end

function M.lexer(text)
  local ls = setmetatable({ s = text, pos = 1, line = 1, has_ahead = false }, Lexer)
  ls:advance()
  return ls
end

---------------------------------------------------------------------------
-- Following constructors.

local OPEN_BLOCK = { ["function"] = true, ["do"] = true, ["if"] = true, ["repeat"] = true }
local CLOSE_BLOCK = { ["end"] = true, ["until"] = true }
local OPEN_BRACKET = { ["("] = true, ["["] = true, ["{"] = true }
local CLOSE_BRACKET = { [")"] = true, ["]"] = true, ["}"] = true }

-- The value of a literal key token ("port", 'a b', [[x]], 1, 0x10), or nil.
local function literal(t, v)
  if t == "<string>" then
    -- v is exactly one string literal of compiled source: safe to evaluate
    local f = load("return " .. v, "=key", "t", {})
    local ok, s = pcall(f)
    if ok and type(s) == "string" then return s end
  elseif t == "<number>" then
    local n = tonumber(v)
    if n then return math.tointeger(n) or n end
  end
  return nil
end

-- Skips the rest of an expression: stops before the ',', ';' or '}' that
-- ends a constructor field (or a ']' ending a key), at nesting level zero.
local function skip_expression(ls)
  local brackets, blocks = 0, 0
  while ls.t ~= "<eof>" do
    local t = ls.t
    if brackets == 0 and blocks == 0 and (t == "," or t == ";" or CLOSE_BRACKET[t]) then
      return
    end
    if OPEN_BRACKET[t] then
      brackets = brackets + 1
    elseif CLOSE_BRACKET[t] then
      brackets = brackets - 1
    elseif OPEN_BLOCK[t] then
      blocks = blocks + 1
    elseif CLOSE_BLOCK[t] then
      blocks = blocks - 1
    end
    ls:advance()
  end
end

-- Follows the constructor at the current '{', recording into map every key
-- path under prefix; duplicates within one constructor go to dups.
local function parse_table(ls, prefix, map, dups)
  ls:advance() -- '{'
  local seen = {}
  local n = 0
  while ls.t ~= "}" and ls.t ~= "<eof>" do
    local key, line
    if ls.t == "[" then
      line = ls.l
      ls:advance()
      local t, v = ls.t, ls.v
      if (t == "<string>" or t == "<number>") and ls:peek() == "]" then
        key = literal(t, v)
        ls:advance()
      else
        skip_expression(ls)
      end
      if ls.t == "]" then ls:advance() end
      if ls.t == "=" then ls:advance() end
    elseif ls.t == "<name>" and ls:peek() == "=" then
      key, line = ls.v, ls.l
      ls:advance()
      ls:advance()
    else
      n = n + 1
      key, line = n, ls.l
    end
    if key ~= nil then
      local p = M.join(prefix, key)
      if seen[p] then dups[#dups + 1] = { path = p, first = seen[p], line = line } end
      seen[p] = line
      map[p] = line
      if ls.t == "{" then parse_table(ls, p, map, dups) end
    end
    skip_expression(ls)
    if ls.t == "," or ls.t == ";" then ls:advance() end
  end
  if ls.t == "}" then ls:advance() end
end

-- Reads an assignment target after its first name: ('.' Name | '[' literal ']')*.
-- Returns the path, or nil when the target is something else.
local function read_target(ls)
  local path = ""
  while true do
    if ls.t == "." and ls:peek() == "<name>" then
      ls:advance()
      path = M.join(path, ls.v)
      ls:advance()
    elseif ls.t == "[" then
      local t = ls:peek()
      if t ~= "<string>" and t ~= "<number>" then return nil end
      ls:advance()
      local key = literal(ls.t, ls.v)
      ls:advance()
      if key == nil or ls.t ~= "]" then return nil end
      ls:advance()
      path = M.join(path, key)
    else
      return path
    end
  end
end

-- Maps the returned table's key paths to lines.
-- Returns {lines = {path = line} or nil, return_line = n or nil,
--          dups = {{path, first, line}}, last_line = line of the last token}.
-- Understands `return { ... }` and also `local t = { ... } ... t.k = v ...
-- return t` at the top level of the chunk.
function M.locate(text)
  local ls = M.lexer(text)
  local depth = 0
  local dups = {}
  local bases = {} -- variable name -> path map, for `return name`
  local result = { dups = dups, last_line = 1 }
  local prev
  while ls.t ~= "<eof>" do
    local t = ls.t
    result.last_line = ls.l
    if OPEN_BLOCK[t] then
      depth = depth + 1
      prev = t
      ls:advance()
    elseif CLOSE_BLOCK[t] then
      depth = depth - 1
      prev = t
      ls:advance()
    elseif t == "return" and depth == 0 then
      result.return_line = ls.l
      ls:advance()
      while ls.t == "(" do ls:advance() end
      if ls.t == "{" then
        local map = {}
        parse_table(ls, "", map, dups)
        result.lines = map
      elseif ls.t == "<name>" and bases[ls.v] then
        result.lines = bases[ls.v]
      end
      break
    elseif t == "<name>" and depth == 0 and prev ~= "." and prev ~= ":" then
      local name, line = ls.v, ls.l
      ls:advance()
      local path = read_target(ls)
      if path and ls.t == "=" then
        ls:advance()
        if path == "" then
          if ls.t == "{" then
            bases[name] = {}
            parse_table(ls, "", bases[name], dups)
          else
            bases[name] = nil
          end
        elseif bases[name] then
          bases[name][path] = line
          if ls.t == "{" then parse_table(ls, path, bases[name], dups) end
        end
      end
      prev = "<name>"
    else
      prev = t
      ls:advance()
    end
  end
  return result
end

return M
