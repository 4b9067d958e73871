-- helpers/natlab: coturn as a test server, and real NATs built from network
-- namespaces (after reference/nat-lab.md; written for these specs).
--
--   natlab.coturn{ips = {"127.0.0.1"}, extra = {...}} -> srv
--     coturn in the foreground on loopback, on a free port, in its own temp
--     dir (no /etc/turnserver.conf, no TLS, static user bt2c:secret in realm
--     bt2c.test, loopback peers allowed). Ready when it answers a Binding
--     (retransmitted every 50 ms for up to 5 s). srv.port, srv.stop(),
--     srv.log().
--   natlab.usable() -> true | false, why      (root, coturn, nft, netns)
--   natlab.up{nats = {"cone", "symmetric"}} -> lab
--     The "internet" is a bridge in namespace pub with 203.0.113.1 and .2
--     (coturn listens on both, relays on .1, port 3478, same user). NAT i
--     (A, B) has 203.0.113.10 / .20 outside and 10.200.i.1 inside; its host
--     is 10.200.i.2. "cone" is nftables masquerade, "symmetric" masquerade
--     random; both drop what is not a reply (a home router).
--     lab.ns.pub, lab.ns.natA, lab.ns.hostA, ...; lab.start(where, opts):
--     a bt2cd inside namespace `where` ("pub", "hostA", "hostB"), started
--     with helpers.node (its console is a path, reachable from here);
--     lab.down() stops coturn and deletes every namespace.
-- Nothing leaves the namespaces and the host's own network is not touched.
local H = require "helpers.node"
local sys = H.sys

local M = {}

M.TURNSERVER = "/usr/bin/turnserver"
M.have_coturn = sys.stat(M.TURNSERVER) ~= nil
M.IP = sys.stat("/usr/sbin/ip") and "/usr/sbin/ip" or "/sbin/ip"
M.USER, M.PASSWORD, M.REALM = "bt2c", "secret", "bt2c.test"

local function sh(cmd)
  return H.sh(cmd .. " >/dev/null 2>&1") == 0
end

local function stop_pid(pid)
  sys.kill(pid, "TERM")
  if not sys.wait(pid, 3) then
    sys.kill(pid, "KILL")
    sys.wait(pid, 5)
  end
end

-- Sends a Binding to ip:port from sock; true when answered within wait s.
local function answers(sock, ip, port, wait)
  local req = sys.stun_encode{ method = 1, class = "request", attrs = { { type = "FINGERPRINT" } } }
  assert(sock:sendto(req, ip, port))
  return sock:recvfrom(wait) ~= nil
end

function M.coturn(opts)
  opts = opts or {}
  local ips = opts.ips or { "127.0.0.1" }
  local dir = H.tmpdir()
  local port = sys.udp_free_port(2) -- the primary and, for RFC 5780, the alternate port
  local argv = { M.TURNSERVER, "-n" }
  for _, ip in ipairs(ips) do argv[#argv + 1] = "--listening-ip=" .. ip end
  for _, a in ipairs({ "--relay-ip=127.0.0.1", "--listening-port=" .. port,
    "--min-port=40000", "--max-port=40999", "--no-tls", "--no-dtls", "--no-cli",
    "--lt-cred-mech", "--user=" .. M.USER .. ":" .. M.PASSWORD, "--realm=" .. M.REALM,
    "--fingerprint", "--allow-loopback-peers", "--log-file=stdout", "--simple-log", "-v",
    "--pidfile=" .. dir .. "/turnserver.pid", "--db=" .. dir .. "/turndb" }) do
    argv[#argv + 1] = a
  end
  for _, a in ipairs(opts.extra or {}) do argv[#argv + 1] = a end
  local pid = sys.spawn{ argv = argv, stdout = dir .. "/coturn.log", stderr = dir .. "/coturn.log" }
  local srv = { pid = pid, port = port, dir = dir }
  function srv.log() return H.read_file(dir .. "/coturn.log") or "" end
  function srv.stop()
    if srv.stopped then return end
    srv.stopped = true
    stop_pid(pid)
    if not os.getenv("BT2C_KEEP") then H.rmtree(dir) end
  end
  local sock = assert(sys.udp_socket())
  local deadline = sys.now() + 5
  local ready = false
  while not ready and sys.now() < deadline and sys.alive(pid) do
    ready = answers(sock, "127.0.0.1", port, 0.05)
  end
  sock:close()
  if not ready then
    local log = srv.log()
    srv.stop()
    error("coturn did not answer STUN within 5 s:\n" .. log)
  end
  return srv
end

function M.usable()
  if sys.getuid() ~= 0 then return false, "needs root (network namespaces)" end
  if not M.have_coturn then return false, "coturn (turnserver) is not installed" end
  if not sys.stat("/usr/sbin/nft") then return false, "nftables (nft) is not installed" end
  local probe = ("bt2cprobe%d"):format(math.random(100000, 999999))
  if not sh(M.IP .. " netns add " .. probe) then return false, "ip netns add is not permitted here" end
  sh(M.IP .. " netns del " .. probe)
  return true
end

local NATS = {
  { name = "A", wan = "203.0.113.10", lan = "10.200.1" },
  { name = "B", wan = "203.0.113.20", lan = "10.200.2" },
}

local function router_rules(mode)
  local rule = mode == "symmetric" and "masquerade random" or "masquerade"
  return table.concat({
    "table ip nat {",
    "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;",
    '    oifname "wan" ' .. rule,
    "  }",
    "}",
    "table inet filter {",
    "  chain forward { type filter hook forward priority filter; policy drop;",
    "    ct state established,related accept",
    '    iifname "lan" oifname "wan" accept',
    "  }",
    "}", "" }, "\n")
end

function M.up(opts)
  opts = opts or {}
  local modes = opts.nats or { "cone" }
  local prefix = ("bt2ct%d"):format(math.random(100000, 999999))
  local lab = { ns = { pub = prefix .. "-pub" }, dir = H.tmpdir(), hosts = {} }
  local ns = lab.ns
  local ip = M.IP
  local function x(name, cmd) return ip .. " netns exec " .. ns[name] .. " " .. cmd end
  local steps = {
    ip .. " netns add " .. ns.pub,
    ip .. " -n " .. ns.pub .. " link add br0 type bridge",
    ip .. " -n " .. ns.pub .. " addr add 203.0.113.1/24 dev br0",
    ip .. " -n " .. ns.pub .. " addr add 203.0.113.2/24 dev br0",
    ip .. " -n " .. ns.pub .. " link set br0 up",
    ip .. " -n " .. ns.pub .. " link set lo up",
  }
  for i, mode in ipairs(modes) do
    local n = NATS[i]
    local nat, host = "nat" .. n.name, "host" .. n.name
    ns[nat], ns[host] = prefix .. "-" .. nat, prefix .. "-" .. host
    lab.hosts[host] = { nat = nat, ip = n.lan .. ".2", public = n.wan, mode = mode }
    for _, s in ipairs({
      ip .. " netns add " .. ns[nat], ip .. " netns add " .. ns[host],
      ip .. " -n " .. ns[nat] .. " link add wan type veth peer name p" .. n.name .. " netns " .. ns.pub,
      ip .. " -n " .. ns[host] .. " link add eth0 type veth peer name lan netns " .. ns[nat],
      ip .. " -n " .. ns.pub .. " link set p" .. n.name .. " master br0",
      ip .. " -n " .. ns.pub .. " link set p" .. n.name .. " up",
      ip .. " -n " .. ns[nat] .. " addr add " .. n.wan .. "/24 dev wan",
      ip .. " -n " .. ns[nat] .. " addr add " .. n.lan .. ".1/24 dev lan",
      ip .. " -n " .. ns[host] .. " addr add " .. n.lan .. ".2/24 dev eth0",
      ip .. " -n " .. ns[nat] .. " link set wan up", ip .. " -n " .. ns[nat] .. " link set lan up",
      ip .. " -n " .. ns[nat] .. " link set lo up",
      ip .. " -n " .. ns[host] .. " link set eth0 up", ip .. " -n " .. ns[host] .. " link set lo up",
      ip .. " -n " .. ns[host] .. " route add default via " .. n.lan .. ".1",
      x(nat, "sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'"), -- a new namespace starts at 0
    }) do
      steps[#steps + 1] = s
    end
  end

  function lab.down()
    if lab.coturn then stop_pid(lab.coturn) end
    lab.coturn = nil
    for _, n in pairs(ns) do sh(ip .. " netns del " .. n) end
    if not os.getenv("BT2C_KEEP") then H.rmtree(lab.dir) end
  end

  for _, cmd in ipairs(steps) do
    if not sh(cmd) then
      lab.down()
      error("lab setup failed at: " .. cmd)
    end
  end
  for host, h in pairs(lab.hosts) do
    local file = lab.dir .. "/" .. h.nat .. ".nft"
    H.write_file(file, router_rules(h.mode))
    if not sh(x(h.nat, "nft -f " .. file)) then
      lab.down()
      error("nft rules did not load for " .. host)
    end
  end
  -- coturn on both public addresses (RFC 5780 on), relaying on .1
  local argv = { ip, "netns", "exec", ns.pub, M.TURNSERVER, "-n", "--listening-ip=203.0.113.1",
    "--listening-ip=203.0.113.2", "--relay-ip=203.0.113.1", "--listening-port=3478",
    "--min-port=49152", "--max-port=49999", "--no-tls", "--no-dtls", "--no-cli",
    "--lt-cred-mech", "--user=" .. M.USER .. ":" .. M.PASSWORD, "--realm=" .. M.REALM,
    "--fingerprint", "--log-file=stdout", "--simple-log", "-v",
    "--pidfile=" .. lab.dir .. "/turnserver.pid", "--db=" .. lab.dir .. "/turndb" }
  for _, a in ipairs(opts.coturn or {}) do argv[#argv + 1] = a end
  local spawned, pid = pcall(sys.spawn, { argv = argv, stdout = lab.dir .. "/coturn.log",
                                          stderr = lab.dir .. "/coturn.log" })
  if not spawned then
    lab.down()
    error(pid)
  end
  lab.coturn = pid
  function lab.coturn_log() return H.read_file(lab.dir .. "/coturn.log") or "" end

  -- Starts bt2cd inside a namespace: it runs through "ip netns exec".
  function lab.start(where, node_opts)
    assert(ns[where], "no namespace " .. tostring(where))
    node_opts = node_opts or {}
    local wrapper = lab.dir .. "/bt2cd-in-" .. where
    H.write_file(wrapper, "#!/bin/sh\nexec " .. ip .. " netns exec " .. ns[where] .. " " ..
      H.shell_quote(H.BT2CD) .. ' "$@"\n')
    sys.chmod(wrapper, 493) -- 0755
    local config = { host = "0.0.0.0", port = node_opts.port or sys.free_port() }
    for k, v in pairs(node_opts.config or {}) do config[k] = v end
    local real = H.BT2CD
    H.BT2CD = wrapper
    local ok, node = pcall(H.start, { config = config })
    H.BT2CD = real
    assert(ok, node)
    return node
  end
  return lab
end

return M
