-- bt2cd configuration: the one `make run` uses.
--
-- A Lua data file that returns one table. It is evaluated with no globals at
-- all (no print, no os, no string methods) under an instruction and memory
-- budget, then checked: an unknown key, a wrong type or a value out of range
-- stops the node with "file:line: message". Every key below is shown with
-- its default unless noted; delete any line to get the default back.
-- Relative paths are relative to this file's directory. docs/CONFIG.md lists
-- every key with its range. Check a file without starting a node:
--   bt2cd --check-config --config conf/bt2cd.lua
return {
  -- NetworkManager (the seed's options) ------------------------------------
  port = 8765,                    -- WebSocket listen port (0: any free port)
  host = "0.0.0.0",               -- address to listen on
  maxPeers = 50,                  -- connected peers at most, in and out
  maxInbound = 25,                -- of which accepted (<= maxPeers)
  maxOutbound = 25,               -- of which dialled (<= maxPeers)
  connectionTimeout = 10000,      -- ms to establish a connection
  handshakeTimeout = 5000,        -- ms to complete the handshake
  pingInterval = 30000,           -- ms between pings
  -- Peers to dial at start: "ws://host:port" or "wss://host:port".
  -- Empty here so a local node does not reach out (default: empty too).
  bootstrapPeers = {},
  -- Peers to keep connected, redialled with backoff (default: empty).
  persistentPeers = {},
  peerDiscoveryInterval = 300000, -- ms between peer exchanges
  -- nodeId = "...",              -- if set, must equal the id derived from
  --                                 the node's key (data/); unset by default
  validators = {},                -- node ids of the validator set (not in the seed)
  nodeMetadata = {                -- sent in the handshake
    version = "1.0.0",
    isValidator = false,          -- a claim; validator status is proven elsewhere
    -- up to 16 extra keys with string, number or boolean values, e.g.
    -- region = "eu-west",
  },

  -- Peer scoring (seed) ---------------------------------------------------
  peerScoring = {
    decayPeriod = 3600000,        -- ms between score decays (1 hour)
    decayFactor = 0.95,           -- multiplier per decay, in (0, 1]
    historyLimit = 100,           -- behaviour records kept per peer
    weights = {                   -- each in [0, 1]; they must sum to 1
      latency = 0.2,
      uptime = 0.2,
      blockPropagation = 0.25,
      transactionRelay = 0.15,
      validatorStatus = 0.1,
      behavior = 0.1,
    },
    thresholds = {                -- banned < neutral < trusted, in [-100, 100]
      trusted = 75,
      neutral = 0,
      banned = -50,
    },
  },

  -- NAT traversal (seed) ----------------------------------------------------
  natTraversal = {
    -- The defaults are the seed's public servers:
    --   stunServers = { "stun:stun.bt2c.network:3478", "stun:stun.l.google.com:19302" },
    --   turnServers = { { urls = "turn:turn.bt2c.network:3478",
    --                     username = "bt2c", credential = "bt2c-turn-credential" } },
    -- Empty here so a local node does not try the internet.
    stunServers = {},
    turnServers = {},
    preferredMethod = "stun",     -- "stun", "turn" or "host"
    candidatePreference = "srflx", -- "host", "srflx", "relay" or "priority"
  },

  -- Message relay (seed) ----------------------------------------------------
  messageRelay = {
    maxRelayHops = 3,             -- 1..32
    relayMode = "selective",      -- "flood", "selective" or "validator_only"
    relayThreshold = 50,          -- score a peer needs for selective relay
    messageExpiration = 3600000,  -- ms a message id is remembered (1 hour)
    cleanupInterval = 300000,     -- ms between cleanups (5 minutes)
  },

  -- Node ---------------------------------------------------------------------
  dataDir = "../data",            -- node key and sqlite files (default "./data")
  policyDir = "../policies",      -- handshake/scoring/relay policies (default "./policies")
  -- consoleSocket = "../data/console.sock", -- default: <dataDir>/console.sock
  networkId = "bt2c-mainnet",     -- the network this node belongs to
  metrics = {                     -- HTTP /metrics and /status
    host = "127.0.0.1",
    port = 0,                     -- 0: no metrics listener
  },
  -- tls = { cert = "cert.pem", key = "key.pem" }, -- both or neither: wss:// when set
  logLevel = "info",              -- "debug", "info", "warn" or "error"
  maxMessageSize = 1048576,       -- bytes per message, 1 KiB..64 MiB
  consoleTimeout = 5000,          -- ms per console command
  policyLimits = {                -- per policy hook call (see policies/README.md)
    instructions = 1000000,
    time = 50,                    -- ms
    memory = 16777216,            -- bytes per policy state
    failures = 5,                 -- consecutive failures before a hook is switched off
  },
}
