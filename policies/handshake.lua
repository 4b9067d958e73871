-- handshake.lua: decides whether to keep a peer whose cryptography C has
-- already checked (its id proves possession of its key). Called once per
-- connection, never per message. The contract is in policies/README.md.

local M = {
  -- Protocol versions we talk to (inclusive).
  min_protocol = 1,
  max_protocol = 1,
  -- Largest accepted |peer clock - our clock|, in milliseconds.
  max_clock_skew_ms = 30000,
}

-- info: node_id, address ("ip:port"), inbound, protocol_version, network_id,
-- local_network_id, clock_skew_ms, metadata_json (may be nil).
-- Returns true, or false and a reason the peer is told.
function M.validate(info)
  if info.network_id ~= info.local_network_id then
    return false, string.format("network mismatch: peer is on %q, this node on %q",
      tostring(info.network_id), tostring(info.local_network_id))
  end
  local v = info.protocol_version
  if v < M.min_protocol or v > M.max_protocol then
    return false, string.format("protocol version %d is outside [%d, %d]",
      v, M.min_protocol, M.max_protocol)
  end
  if math.abs(info.clock_skew_ms) > M.max_clock_skew_ms then
    return false, string.format("clock skew of %.0f ms exceeds %.0f ms",
      info.clock_skew_ms, M.max_clock_skew_ms)
  end
  return true
end

return M
