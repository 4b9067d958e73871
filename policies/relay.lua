-- relay.lua: which relay mode a message type travels in. Called when C
-- (re)computes its per-type cache (new type, peer set change, reload), never
-- per message. The contract is in policies/README.md.

local mr = config.messageRelay

local M = {
  -- "flood", "selective" or "validator_only" (default: messageRelay.relayMode).
  mode = mr.relayMode,
  -- Minimum total score of a peer in selective mode (messageRelay.relayThreshold).
  threshold = mr.relayThreshold,
  -- Selective mode sends each message to at most this many peers, the best
  -- scored first: about fanout - 1 duplicates per delivery (docs/TESTNET.md).
  fanout = 3,
}

-- Consensus traffic is for validators. A new validator set is not: every
-- node must learn it (including a validator it removes), so it travels in
-- the configured mode.
local consensus = {
  consensus_vote = true,
  consensus_proposal = true,
}

-- msg_type: "block", "consensus_vote", ...; situation: {peers, validators,
-- trusted} counts of connected peers. Returns one of the three modes.
function M.select_mode(msg_type, situation)
  if consensus[msg_type] and situation.validators > 0 then
    return "validator_only"
  end
  return M.mode
end

return M
