-- scoring.lua: how a peer's measured behaviour becomes its score, and what
-- the node does when a score crosses a threshold. Called when a score
-- changes (a recorded behaviour, a ping result, a connection event, the
-- scoring timer), never per message. The contract is in policies/README.md.

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
  -- Behaviour points per recorded PeerBehavior (the seed's values). The
  -- points add up (at most 10, decaying toward 0); with the behaviour weight
  -- of 0.1 each point moves the total by one: a peer sending tens of invalid
  -- messages is banned, one bad message from an honest peer fades.
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

local order = {
  "latency", "uptime", "blockPropagation", "transactionRelay", "validatorStatus", "behavior",
}

-- Steps of the seed's mappings: the first limit v is below gives its score.
local function step(v, limits, scores)
  for i, limit in ipairs(limits) do
    if v < limit then return scores[i] end
  end
  return scores[#scores]
end

-- Validity (0..7) plus usefulness (0..3), the seed's block and transaction
-- scores; 0 while the peer has sent none.
local function delivery(good, duplicate, invalid)
  local n = good + duplicate + invalid
  if n == 0 then return 0 end
  local valid = (good + duplicate) / n
  local first = good / n
  local v = valid > 0.99 and 7 or valid > 0.95 and 5 or valid > 0.9 and 3 or valid > 0.8 and 1 or 0
  local u = first > 0.5 and 3 or first > 0.25 and 2 or first > 0.1 and 1 or 0
  return v + u
end

-- m: what C measured (see policies/README.md). Returns the six categories:
-- each 0..10, behavior at most 10 and as low as the points go (to -100).
function M.categories(m)
  local up = m.uptime * 100
  return {
    latency = m.rtt_ms and step(m.rtt_ms, { 50, 100, 200, 500 }, { 10, 8, 5, 2, 0 }) or 0,
    uptime = up > 99 and 10 or up > 95 and 8 or up > 90 and 6 or up > 80 and 4 or up > 70 and 2 or 0,
    blockPropagation = delivery(m.blocks.first, m.blocks.duplicate, m.blocks.invalid),
    transactionRelay = delivery(m.transactions.useful, m.transactions.duplicate,
      m.transactions.invalid),
    validatorStatus = m.validator and 10 or 0,
    behavior = math.max(-100, math.min(10, m.behavior)),
  }
end

-- c: the categories. Returns the total in -100..100: ten times the weighted
-- sum, so a peer perfect in every category scores 100.
function M.total(c)
  local sum = 0
  for _, name in ipairs(order) do
    sum = sum + M.weights[name] * c[name]
  end
  return math.max(-100, math.min(100, 10 * sum))
end

-- name: a PeerBehavior ("GOOD_BLOCK", ...); total: the peer's current total.
-- Returns the behaviour points it adds (negative: takes away).
function M.behavior_delta(name, _total)
  return M.behaviors[name] or 0
end

-- A peer's level changed (levels: "banned", "below_neutral", "neutral",
-- "trusted"). Returns what to do, or nil for nothing.
function M.on_threshold(_peer, _from, to)
  if to == "banned" then
    return { ban_seconds = M.ban_seconds, disconnect = true }
  end
  return nil
end

return M
