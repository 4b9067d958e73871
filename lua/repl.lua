-- repl: Lua's own REPL rules for the console (after lua.c).
local pretty = require "pretty"
local json = require "json"

local M = {}

-- Compiles a console chunk: first as an expression ("return <src>"), then as
-- statements. Returns the function, or nil, the error and whether the chunk
-- is merely incomplete (the error is at <eof>), so the caller can ask for
-- more lines.
function M.compile(src)
  local fn = load("return " .. src .. "\n", "=console", "t")
  if fn then return fn end
  local err
  fn, err = load(src, "=console", "t")
  if fn then return fn end
  return nil, err, err:sub(-5) == "<eof>"
end

-- Formats results: mode "text" pretty-prints them, "json" encodes them.
function M.format(mode, n, ...)
  if mode == "json" then return json.results(n, ...) end
  return pretty.results(n, ...)
end

return M
