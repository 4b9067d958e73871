-- pretty: renders Lua values for people (the console's results).
-- Tables print as Lua constructors with sorted keys, one entry per line once
-- they no longer fit on one; cycles and depth are bounded.
local M = {}

local MAX_DEPTH = 8
local MAX_WIDTH = 100

local identifier = "^[%a_][%w_]*$"
local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do
  keywords[w] = true
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  local order = { number = 1, string = 2, boolean = 3 }
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return (order[ta] or 9) < (order[tb] or 9) end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    local s = string.format("%.14g", v) -- for people: 14 digits are plenty
    if not s:find("[%.eEn]") then s = s .. ".0" end
    return s
  end
  return tostring(v)
end

local render

local function render_key(k, seen, depth)
  if type(k) == "string" and k:match(identifier) and not keywords[k] then return k end
  return "[" .. render(k, seen, depth, "") .. "]"
end

render = function(v, seen, depth, indent)
  if type(v) ~= "table" then return scalar(v) end
  if seen[v] then return "<cycle>" end
  if depth >= MAX_DEPTH then return "{...}" end
  seen[v] = true
  local n = #v
  local parts = {}
  for i = 1, n do
    parts[#parts + 1] = render(v[i], seen, depth + 1, indent .. "  ")
  end
  for _, k in ipairs(sorted_keys(v)) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      parts[#parts + 1] = render_key(k, seen, depth + 1) .. " = " ..
        render(v[k], seen, depth + 1, indent .. "  ")
    end
  end
  seen[v] = nil
  if #parts == 0 then return "{}" end
  local flat = "{ " .. table.concat(parts, ", ") .. " }"
  if #flat + #indent <= MAX_WIDTH and not flat:find("\n") then return flat end
  return "{\n" .. indent .. "  " .. table.concat(parts, ",\n" .. indent .. "  ") ..
    "\n" .. indent .. "}"
end

-- A value as the console shows it: strings at top level are printed as they
-- are (like Lua's own REPL), everything else rendered.
function M.render(v)
  if type(v) == "string" then return v end
  return render(v, {}, 0, "")
end

-- Several results, tab-separated, as Lua's REPL prints them.
function M.results(n, ...)
  local out = {}
  for i = 1, n do out[i] = M.render((select(i, ...))) end
  return table.concat(out, "\t")
end

return M
