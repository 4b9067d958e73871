-- json: Lua values to one JSON document (the console's --json mode).
-- Tables whose keys are exactly 1..n become arrays (an empty table is []),
-- any other table an object with string keys in sorted order. Non-finite
-- numbers become null; functions and userdata their tostring(); cycles are
-- an error.
local M = {}

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  if not utf8.len(s) then
    -- not UTF-8: keep every byte, as the code point of the same value
    s = s:gsub("[\128-\255]", function(c) return utf8.char(c:byte()) end)
  end
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(x)
  if math.type(x) == "integer" then return tostring(x) end
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  for _, fmt in ipairs({ "%.14g", "%.15g", "%.16g", "%.17g" }) do
    local s = string.format(fmt, x)
    if tonumber(s) == x then return s end
  end
  return string.format("%.17g", x)
end

local function is_array(t)
  local n = #t
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

local encode

local function encode_table(t, seen)
  if seen[t] then error("cannot encode a table that contains itself", 0) end
  seen[t] = true
  local out = {}
  if is_array(t) then
    for i = 1, #t do out[i] = encode(t[i], seen) end
    seen[t] = nil
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    out[#out + 1] = encode_string(tostring(k)) .. ":" .. encode(t[k], seen)
  end
  seen[t] = nil
  return "{" .. table.concat(out, ",") .. "}"
end

encode = function(v, seen)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then return encode_number(v) end
  if t == "string" then return encode_string(v) end
  if t == "table" then return encode_table(v, seen) end
  return encode_string(tostring(v))
end

function M.encode(v)
  return encode(v, {})
end

-- The results of a chunk: none -> null, one -> itself, several -> an array.
function M.results(n, ...)
  if n == 0 then return "null" end
  if n == 1 then return M.encode((...)) end
  local out = {}
  for i = 1, n do out[i] = encode((select(i, ...)), {}) end
  return "[" .. table.concat(out, ",") .. "]"
end

return M
