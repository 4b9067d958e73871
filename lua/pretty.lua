-- pretty: placeholder
local M = {}
return M
