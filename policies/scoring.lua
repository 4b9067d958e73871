-- scoring.lua: how category scores combine into a peer's total, and how much
-- each recorded behaviour moves it. Called when a score changes, never per
-- message. The contract is in policies/README.md.

local ps = config.peerScoring

local M = {
  -- Weight of each category (each category scores 0..10); must sum to 1.
  -- Defaults: peerScoring.weights of the node configuration.
  weights = {
    latency = ps.weights.latency,
    uptime = ps.weights.uptime,
    blockPropagation = ps.weights.blockPropagation,
    transactionRelay = ps.weights.transactionRelay,
    validatorStatus = ps.weights.validatorStatus,
    behavior = ps.weights.behavior,
  },
  -- Score thresholds, banned < neutral < trusted, each in -100..100.
  thresholds = {
    trusted = ps.thresholds.trusted,
    neutral = ps.thresholds.neutral,
    banned = ps.thresholds.banned,
  },
  -- Change of the behaviour category per recorded PeerBehavior (the seed's).
  behaviors = {
    GOOD_BLOCK = 2,
    BAD_BLOCK = -5,
    GOOD_TRANSACTION = 1,
    BAD_TRANSACTION = -2,
    SPAM = -10,
    INVALID_MESSAGE = -3,
    TIMEOUT = -1,
    DISCONNECT = -1,
    RECONNECT = 1,
    RELAY_SUCCESS = 1,
    RELAY_FAILURE = -1,
  },
  -- How long a peer that falls to the banned threshold stays banned.
  ban_seconds = 43200,
}

local categories = {
  "latency", "uptime", "blockPropagation", "transactionRelay", "validatorStatus", "behavior",
}

-- categories: {latency = n, uptime = n, ...}. Returns the total in -100..100.
function M.total(c)
  local sum = 0
  for _, name in ipairs(categories) do
    sum = sum + M.weights[name] * (c[name] or 0)
  end
  return math.max(-100, math.min(100, sum))
end

-- name: a PeerBehavior ("GOOD_BLOCK", ...); total: the peer's current total.
-- Returns the change of the behaviour category, in -100..100.
function M.behavior_delta(name, _total)
  return M.behaviors[name] or 0
end

return M
