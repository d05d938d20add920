#!/usr/bin/env bash
# Record connections that a middlebox (or the path) kills, over a real routed path:
#
#   ssc-client  c0 198.18.1.2/24 ── r0 198.18.1.1/24  ssc-router  r1 198.18.2.1/24 ── s0 198.18.2.2/24  ssc-server
#
# Three network namespaces made here and deleted on exit; veth pairs; the router forwards
# (ip_forward=1 in ssc-router only, so it decrements the TTL: the server's packets reach
# the client with TTL 63) and runs nftables + conntrack in its FORWARD hook. Only
# addresses from the benchmark range 198.18.0.0/15; no default routes; the host's own
# interfaces, routes and firewall are never touched.
#
# Each scenario gets a fresh topology: server (ssc-server) -> tcpdump in ssc-client (c0) and
# in ssc-server (s0) at the same time -> client (ssc-client: Python requests, or Node 20's
# node:http / fetch) -> the scenario's action while the client runs (the server host
# vanishes, the server process is SIGKILLed) -> router logs -> stop -> truth.json
# (lab/paths/make_truth.py, from the logs only).
#
# usage: sudo lab/record_paths.sh [SCENARIO ...]     (default: all)
#        lab/record_paths.sh --list
# Writes captures/lab/SCENARIO/{client.pcap,server.pcap,client.log,server.log,router.log,truth.json}
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="$ROOT/.venv/bin/python"
ALL="middlebox-rst silent-drop refused syn-blackhole zero-window dead-peer server-killed keepalive-race undici-idle-close node-http-timeout"

if [[ "${1:-}" == "--list" ]]; then echo "$ALL" | tr ' ' '\n'; exit 0; fi
SCENARIOS=("$@"); [[ ${#SCENARIOS[@]} -gt 0 ]] || read -r -a SCENARIOS <<<"$ALL"
for s in "${SCENARIOS[@]}"; do
  [[ " $ALL " == *" $s "* ]] || { echo "unknown scenario '$s'; known: $ALL" >&2; exit 2; }
done

[[ $EUID -eq 0 ]] || { echo "record_paths.sh needs root (namespaces, tcpdump)" >&2; exit 1; }
# What the scenarios need, installed when missing (a fresh machine records too).
APT_UPDATED=0
apt_install() {  # package...
  echo "[setup] apt-get install $*" >&2
  [[ $APT_UPDATED -eq 1 ]] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
for cmd in ip nft conntrack tcpdump ethtool tc; do
  if ! command -v "$cmd" >/dev/null; then apt_install iproute2 nftables conntrack tcpdump ethtool; break; fi
done
if [[ " ${SCENARIOS[*]} " == *" keepalive-race "* ]] && ! command -v nginx >/dev/null; then
  # Only the binary is used (a private config, run inside ssc-server). Debian's postinst
  # would start the packaged service on the host: a policy-rc.d that forbids it is put in
  # place for the install when there is none, and removed again.
  POLICY=/usr/sbin/policy-rc.d; ADDED_POLICY=0
  if [[ ! -e $POLICY ]]; then printf '#!/bin/sh\nexit 101\n' >$POLICY; chmod 755 $POLICY; ADDED_POLICY=1; fi
  apt_install nginx-light || apt_install nginx
  [[ $ADDED_POLICY -eq 1 ]] && rm -f $POLICY
fi
# keepalive-race delays the path; without sch_netem it needs iptables' NFQUEUE target
if [[ " ${SCENARIOS[*]} " == *" keepalive-race "* ]] && ! command -v iptables >/dev/null; then apt_install iptables; fi
NODE_SCENARIOS=" keepalive-race undici-idle-close node-http-timeout "
for s in "${SCENARIOS[@]}"; do
  if [[ "$NODE_SCENARIOS" == *" $s "* ]] && ! command -v node >/dev/null; then apt_install nodejs; break; fi
done
"$HERE/setup.sh"      # the pinned Python deps of lab/requirements.txt (requests among them)

NS_C=ssc-client; NS_R=ssc-router; NS_S=ssc-server
C_IP=198.18.1.2; R_CIP=198.18.1.1; R_SIP=198.18.2.1; S_IP=198.18.2.2
for ns in $NS_C $NS_R $NS_S; do
  if ip netns list | grep -qw "^$ns"; then
    echo "namespace $ns already exists (a previous run?); remove it with 'ip netns del $ns'" >&2; exit 1
  fi
done

inc() { ip netns exec $NS_C "$@"; }
inr() { ip netns exec $NS_R "$@"; }
ins() { ip netns exec $NS_S "$@"; }
# ss -i prints each socket's details on a continuation line: one socket per line, '|' between sockets.
ss_join() { awk '/^[^ \t]/{if(l)print l; l=$0; next}{l=l" "$0} END{if(l)print l}' | tr -s ' \t' ' ' | paste -sd'|' -; }
logline() { "$PY" "$HERE/paths/routerlog.py" line "$@"; }

WORK=""; CAPS=(); PIDS=()   # tcpdump pids; other pids (server, conntrack -E, client)
stop_list() {  # signal pid...: signal them, give each 3 s, then SIGKILL
  local sig=$1 p; shift
  for p in "$@"; do kill "-$sig" "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
stop_pids() {
  # Only processes this script started, by pid. The captures first (SIGINT flushes them),
  # so that the server's shutdown (FINs, and the router's answers to them) stays out.
  [[ ${#CAPS[@]} -gt 0 ]] && stop_list INT "${CAPS[@]}"
  CAPS=()
  [[ ${#PIDS[@]} -gt 0 ]] && stop_list TERM "${PIDS[@]}"
  PIDS=()
}
nap() { sleep "$1" & wait $!; }  # a sleep that lets the INT/TERM trap run at once
topo_down() {
  stop_pids
  local ns p
  for ns in $NS_C $NS_R $NS_S; do
    ip netns list | grep -qw "^$ns" || continue
    # Anything still running inside our own namespaces was started by this script.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}
cleanup() {
  topo_down
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  WORK=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

topo_up() {
  local ns dev
  for ns in $NS_C $NS_R $NS_S; do
    ip netns add $ns
    ip -n $ns link set lo up
    ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  # veth pairs created inside the namespaces (never in the host's).
  ip -n $NS_C link add c0 type veth peer name r0 netns $NS_R
  ip -n $NS_R link add r1 type veth peer name s0 netns $NS_S
  ip -n $NS_C addr add $C_IP/24 dev c0
  ip -n $NS_R addr add $R_CIP/24 dev r0
  ip -n $NS_R addr add $R_SIP/24 dev r1
  ip -n $NS_S addr add $S_IP/24 dev s0
  for dev in c0; do ip -n $NS_C link set $dev up; done
  for dev in r0 r1; do ip -n $NS_R link set $dev up; done
  ip -n $NS_S link set s0 up
  ip -n $NS_C route add 198.18.2.0/24 via $R_CIP dev c0
  ip -n $NS_S route add 198.18.1.0/24 via $R_SIP dev s0
  inr sysctl -qw net.ipv4.ip_forward=1
  # Real-NIC-like segments and correct checksums in the captures: no TSO/GSO/GRO and
  # software checksums on every veth end.
  inc ethtool -K c0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  inr ethtool -K r0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  inr ethtool -K r1 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ins ethtool -K s0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
}

wait_log() {  # file regex count seconds: wait until the log has count lines matching regex
  local file=$1 re=$2 n=$3 secs=$4 i
  for ((i = 0; i < secs * 20; i++)); do
    [[ $(grep -cE -- "$re" "$file" 2>/dev/null || true) -ge $n ]] && return 0
    sleep 0.05
  done
  echo "timed out after ${secs}s waiting for $n x '$re' in $file" >&2; return 1
}
now_iso() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }

nginx_conf() {  # dir port keepalive_timeout: a private nginx config, everything inside dir
  local dir=$1 port=$2 ka=$3 t
  mkdir -p "$dir/tmp"
  {
    echo "daemon off;"
    echo "master_process on;"
    echo "worker_processes 1;"
    echo "pid $dir/nginx.pid;"
    echo "error_log $dir/error.log info;"
    echo "events { worker_connections 64; }"
    echo "http {"
    echo "  log_format lab '\$msec request client_ip=\$remote_addr client_port=\$remote_port method=\$request_method target=\$request_uri status=\$status bytes_sent=\$bytes_sent connection=\$connection connection_requests=\$connection_requests request_time_s=\$request_time lab_id=\$http_x_lab_req user_agent="\$http_user_agent"';"
    echo "  access_log $dir/access.log lab;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $dir/tmp/$t;"; done
    echo "  keepalive_timeout ${ka}s;"
    echo "  server {"
    echo "    listen $S_IP:$port;"
    echo "    location = /health { default_type application/json; return 200 '{\"ok\":true}'; }"
    echo "  }"
    echo "}"
  } >"$dir/nginx.conf"
}

wait_listen() {  # ns port pid errfile: wait for the listening socket without connecting to it
  local ns=$1 port=$2 pid=$3 err=$4
  for _ in $(seq 100); do
    ip netns exec "$ns" ss -Hltn "sport = :$port" | grep -q . && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$err" >&2; return 1; }
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$err" >&2; return 1
}

start_tcpdump() {  # ns dev file errfile filter
  local ns=$1 dev=$2 file=$3 err=$4 filter=$5
  ip netns exec "$ns" tcpdump -i "$dev" -w "$file" -U -s 0 -Z root "$filter" 2>"$err" &
  CAPS+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$err" && return 0
    sleep 0.1
  done
  cat "$err" >&2; return 1
}

record() {
  local SCENARIO=$1
  local OUT="$ROOT/captures/lab/$SCENARIO"
  local PORT SERVER_PORT ACTION="reject" CT_TIMEOUT="" DROP_SYN=0 CLIENT_ARGS=() SERVER_CMD=()
  local POST_WAIT=1 DESCRIPTION="" ZW=0 SERVER_KIND=app CLIENT_KIND=py NETEM_MS="" EVENT="" KA=60 NGINX_KA=2
  case "$SCENARIO" in
    middlebox-rst)
      PORT=8401; CT_TIMEOUT=3; ACTION=reject
      CLIENT_ARGS=(--mode keepalive --idle 6)
      DESCRIPTION="Keep-alive GET /health, 6 s idle, second GET on the pooled connection. The router's conntrack forgot the flow after 3 s (nf_conntrack_tcp_timeout_established=3); its FORWARD rule rejects packets of unknown flows with a TCP reset carrying the server's address. The server never sees the second request." ;;
    silent-drop)
      PORT=8402; CT_TIMEOUT=3; ACTION=drop; POST_WAIT=7
      CLIENT_ARGS=(--mode keepalive --idle 6)
      DESCRIPTION="As middlebox-rst, but the router silently drops packets of flows it forgot: the second GET is retransmitted with RTO backoff, never acknowledged; the client gives up on its 8 s read timeout and closes the socket." ;;
    refused)
      PORT=8403; SERVER_PORT=8400
      CLIENT_ARGS=(--mode get)
      DESCRIPTION="The client connects to a port nobody listens on in ssc-server (the server process listens on 8400 only): the server's kernel answers the SYN with RST/ACK, the client gets ECONNREFUSED." ;;
    syn-blackhole)
      PORT=8404; DROP_SYN=1
      CLIENT_ARGS=(--mode get)
      DESCRIPTION="The router drops SYNs to port 8404 (the server listens there): the client's kernel retransmits the SYN (1 s, 3 s) and requests gives up on its 5 s connect timeout." ;;
    zero-window)
      PORT=8405; ZW=1; POST_WAIT=3
      CLIENT_ARGS=(--mode upload --body-bytes 2000000)
      DESCRIPTION="The server accepts and never reads (SO_RCVBUF 4096); the client POSTs a 2 MB body: the server's window drops to 0, the client's kernel sends zero-window probes, requests gives up after its timeout (the socket timeout during the body upload is the connect timeout, 5 s)." ;;
    dead-peer)
      PORT=8406; EVENT=vanish; POST_WAIT=1
      CLIENT_ARGS=(--mode probe --keepidle 2 --keepintvl 1 --keepcnt 3 --watch 20)
      DESCRIPTION="The client sets TCP keep-alive on its socket (SO_KEEPALIVE, TCP_KEEPIDLE 2 s, TCP_KEEPINTVL 1 s, TCP_KEEPCNT 3), makes one GET /health on a keep-alive connection and stays idle. 0.5 s after the response the server's host vanishes from the network (its link goes down: ip -n ssc-server link set s0 down). The client kernel's keep-alive probes go unanswered; after 3 probes it gives up: it sends an RST and the socket errors with ETIMEDOUT." ;;
    server-killed)
      PORT=8407; EVENT=kill; POST_WAIT=1
      CLIENT_ARGS=(--mode concurrent --parallel 3 --path "/exec?seconds=10" --pipelined --pipelined-body-bytes 4096)
      DESCRIPTION="Three concurrent POST /exec (10 s) from three requests.Sessions (threads), plus a fourth connection from a plain socket that pipelines a second POST behind its first (uvicorn stops reading while the first is served, so the second's 4096-byte body stays unread in the server's receive queue). About 2 s after the requests were sent the server process is killed with SIGKILL: its kernel closes all its sockets at the same instant, with a FIN, or an RST where unread data was left." ;;
    keepalive-race)
      PORT=8408; SERVER_KIND=nginx; CLIENT_KIND=node; NETEM_MS=50; POST_WAIT=1
      CLIENT_ARGS=(--mode race --reuse-after-ms $((NGINX_KA * 1000 - 50)))
      DESCRIPTION="nginx (keepalive_timeout ${NGINX_KA}s) and a Node node:http client with an http.Agent({keepAlive: true}); the router delays each direction by 50 ms (tc netem, or an NFQUEUE delay line where the kernel has no netem: RTT +100 ms). GET /health (200), then the same request on the pooled socket $((NGINX_KA * 1000 - 50)) ms after the response ended: sent just as nginx's keep-alive timer closes the connection, so it crosses nginx's FIN on the wire; the server's kernel answers the request with an RST, the client sees 'socket hang up' (ECONNRESET)." ;;
    undici-idle-close)
      PORT=8409; CLIENT_KIND=node; POST_WAIT=1
      CLIENT_ARGS=(--mode fetch --requests 2 --gap-ms 200 --linger-ms 7000)
      DESCRIPTION="Node 20's built-in fetch (undici) against uvicorn (keep-alive 60 s): two GET /health on one pooled connection, then the process stays alive 7 s with nothing to do; undici closes the idle socket by itself after its keepAliveTimeout (4 s): a client FIN with nothing outstanding. Nothing failed (a look-alike of a client timeout)." ;;
    node-http-timeout)
      PORT=8410; CLIENT_KIND=node; POST_WAIT=1
      CLIENT_ARGS=(--mode timeout --requests 2 --timeout-ms 3000 --path /exec)
      DESCRIPTION="Node's node:http (http.globalAgent) POSTs to /exec (the server takes 10 s) with req.setTimeout(3000, () => req.destroy()): 3 s after the request's last byte the client destroys the socket (FIN) and sees 'socket hang up'. Twice, one connection each." ;;
  esac
  SERVER_PORT=${SERVER_PORT:-$PORT}
  local CLIENT_CMD
  if [[ $CLIENT_KIND == node ]]; then
    CLIENT_ARGS+=(--host $S_IP --port $PORT)
    CLIENT_CMD=("$(command -v node)" "$HERE/paths/nodeclient.js" "${CLIENT_ARGS[@]}")
  else
    CLIENT_ARGS+=(--host $S_IP --port $PORT --source-ip $C_IP --connect-timeout 5 --read-timeout 8)
    CLIENT_CMD=("$PY" "$HERE/paths/client.py" "${CLIENT_ARGS[@]}")
  fi

  mkdir -p "$OUT"
  rm -f "$OUT"/{client.pcap,server.pcap,client.log,server.log,router.log,truth.json}
  WORK="$(mktemp -d)"
  if [[ $ZW -eq 1 ]]; then
    SERVER_CMD=("$PY" "$HERE/paths/sink.py" --host $S_IP --port $SERVER_PORT --rcvbuf 4096 --hold 20)
  elif [[ $SERVER_KIND == nginx ]]; then
    nginx_conf "$WORK/nginx" "$SERVER_PORT" "$NGINX_KA"
    SERVER_CMD=("$(command -v nginx)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log")
  else
    SERVER_CMD=("$PY" "$HERE/server/app.py" --host $S_IP --port $SERVER_PORT --keep-alive-timeout $KA)
  fi
  topo_up

  # ---------------------------------------------------------------- router policy
  [[ -n "$CT_TIMEOUT" ]] && inr sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established="$CT_TIMEOUT"
  local verdict="reject with tcp reset"; [[ $ACTION == drop ]] && verdict="drop"
  local invalid_verdict="$verdict"
  {
    echo "table inet ssc {"
    echo "  chain forward {"
    echo "    type filter hook forward priority filter; policy accept;"
    echo "    ct state established,related counter accept comment \"tracked-flow\""
    [[ $DROP_SYN -eq 1 ]] && echo "    tcp dport $PORT tcp flags & (fin|syn|rst|ack) == syn counter drop comment \"drop-syn-$PORT\""
    echo "    tcp flags & (fin|syn|rst|ack) == syn ct state new counter accept comment \"new-flow-syn\""
    echo "    ct state invalid counter $invalid_verdict comment \"unknown-flow-invalid\""
    echo "    ct state new counter $verdict comment \"unknown-flow-new-without-syn\""
    echo "  }"
    echo "}"
  } >"$WORK/ruleset.nft"
  inr nft -f "$WORK/ruleset.nft"
  logline router topology client="$C_IP/24 (ssc-client c0)" router="$R_CIP/24 r0, $R_SIP/24 r1 (ssc-router, ip_forward=1)" \
    server="$S_IP/24 (ssc-server s0)" >"$OUT/router.log"
  logline router router_config forward_unknown_flow="$verdict" invalid="$invalid_verdict" drop_syn_port="$([[ $DROP_SYN -eq 1 ]] && echo $PORT || echo -)" \
    ct_tcp_timeout_established_s="$(inr sysctl -n net.netfilter.nf_conntrack_tcp_timeout_established)" \
    ct_tcp_loose="$(inr sysctl -n net.netfilter.nf_conntrack_tcp_loose)" \
    ct_tcp_be_liberal="$(inr sysctl -n net.netfilter.nf_conntrack_tcp_be_liberal)" \
    ruleset="$(inr nft list ruleset)" >>"$OUT/router.log"
  if [[ -n "$NETEM_MS" ]]; then
    # A WAN-like path: each direction delayed by the router (forwarded packets only).
    if inr tc qdisc add dev r0 root netem delay "${NETEM_MS}ms" 2>"$WORK/netem.err"; then
      inr tc qdisc add dev r1 root netem delay "${NETEM_MS}ms"
      logline router netem delay_each_way_ms="$NETEM_MS" rtt_added_ms=$((2 * NETEM_MS)) \
        r0="$(inr tc qdisc show dev r0 | head -1)" r1="$(inr tc qdisc show dev r1 | head -1)" >>"$OUT/router.log"
    else
      # No sch_netem in this kernel: the same delay from a userspace holder on NFQUEUE
      # (lab/paths/delayline.py); the kernel still forwards every packet itself.
      ip netns exec $NS_R "$PY" "$HERE/paths/delayline.py" --queue 0 --delay-ms "$NETEM_MS" --max-seconds 120 \
        >"$WORK/delay.log" 2>"$WORK/delay.err" &
      PIDS+=($!)
      wait_log "$WORK/delay.log" "delay_line_start" 1 10 || { cat "$WORK/delay.err" >&2; return 1; }
      inr iptables -A FORWARD -p tcp --dport "$PORT" -j NFQUEUE --queue-num 0
      inr iptables -A FORWARD -p tcp --sport "$PORT" -j NFQUEUE --queue-num 0
      logline router delay_line delay_each_way_ms="$NETEM_MS" rtt_added_ms=$((2 * NETEM_MS)) method=nfqueue \
        netem_error="$(head -c 200 "$WORK/netem.err")" rules="$(inr iptables -S FORWARD | paste -sd'|' -)" >>"$OUT/router.log"
    fi
  fi
  # Background jobs started with `ip netns exec` directly (it execs the command), so $! is
  # the process itself, not a subshell.
  ip netns exec $NS_R stdbuf -oL conntrack -E -p tcp -o timestamp >"$WORK/ct.raw" 2>"$WORK/ct.err" &
  PIDS+=($!)

  if [[ $ZW -eq 1 ]]; then
    # Small socket buffers so that the stall comes after a few tens of KB (small capture).
    inc sysctl -qw net.ipv4.tcp_wmem="4096 16384 32768"
    ins sysctl -qw net.ipv4.tcp_rmem="4096 8192 16384"
  fi

  # ---------------------------------------------------------------- server, captures, client
  # Append mode: the script adds lines to server.log while the server is still writing.
  if [[ $SERVER_KIND == nginx ]]; then
    # nginx writes its own logs (access.log in the lab's key=value shape, $msec first);
    # they become server.log lines after the run (routerlog.py nginx).
    logline server server_start impl="nginx $(nginx -v 2>&1 | sed 's#.*nginx/##')" host=$S_IP port=$SERVER_PORT \
      keep_alive_timeout=$NGINX_KA config="$(cat "$WORK/nginx/nginx.conf")" >>"$OUT/server.log"
  fi
  ip netns exec $NS_S "${SERVER_CMD[@]}" >>"$OUT/server.log" 2>"$WORK/server.err" &
  local SERVER_PID=$!
  PIDS+=($SERVER_PID)
  wait_listen $NS_S "$SERVER_PORT" $SERVER_PID "$WORK/server.err"
  logline server listening ports="$(ins ss -Hltn | awk '{print $4}' | paste -sd, -)" >>"$OUT/server.log"

  local FILTER="tcp port $PORT"
  # dead-peer: also the ICMP errors the router sends back when it cannot reach the host
  [[ $EVENT == vanish ]] && FILTER="tcp port $PORT or icmp"
  start_tcpdump $NS_C c0 "$OUT/client.pcap" "$WORK/tcpdump-c.err" "$FILTER"
  start_tcpdump $NS_S s0 "$OUT/server.pcap" "$WORK/tcpdump-s.err" "$FILTER"
  sleep 0.3

  local k="net.ipv4"
  logline client kernel release="$(uname -r)" \
    tcp_syn_retries="$(inc sysctl -n $k.tcp_syn_retries)" tcp_syn_linear_timeouts="$(inc sysctl -n $k.tcp_syn_linear_timeouts 2>/dev/null || echo -)" \
    tcp_retries2="$(inc sysctl -n $k.tcp_retries2)" tcp_orphan_retries="$(inc sysctl -n $k.tcp_orphan_retries)" \
    tcp_wmem="$(inc sysctl -n $k.tcp_wmem | tr -s '\t ' ' ')" tcp_congestion_control="$(inc sysctl -n $k.tcp_congestion_control)" \
    tcp_keepalive_time="$(inc sysctl -n $k.tcp_keepalive_time)" tcp_keepalive_intvl="$(inc sysctl -n $k.tcp_keepalive_intvl)" \
    tcp_keepalive_probes="$(inc sysctl -n $k.tcp_keepalive_probes)" >"$OUT/client.log"
  echo "[$SCENARIO] recording port $PORT ..." >&2
  ip netns exec $NS_C timeout 60 "${CLIENT_CMD[@]}" >>"$OUT/client.log" 2>"$WORK/client.err" &
  local CLIENT_PID=$!
  PIDS+=($CLIENT_PID)

  # ---------------------------------------------------------------- the scenario's event
  local t0
  if [[ $EVENT == vanish ]]; then
    # The server's host drops off the network 0.5 s after the client got its response:
    # its only link goes down (as a pulled cable or a powered-off VM). The router keeps
    # its route and neighbour entry and forwards into a dead link.
    wait_log "$OUT/client.log" " client response " 1 15
    nap 0.5
    t0=$(now_iso)
    ip -n $NS_S link set s0 down
    logline server host_vanished command="ip -n $NS_S link set s0 down" started_at="$t0" \
      link="$(ip -n $NS_S -br link show s0 | tr -s ' ')" >>"$OUT/server.log"
    logline router server_link_down dev=r1 started_at="$t0" link="$(inr ip -br link show r1 | tr -s ' ')" \
      neigh="$(inr ip neigh show dev r1 | paste -sd'|' -)" >>"$OUT/router.log"
  elif [[ $EVENT == kill ]]; then
    # About 2 s after the requests left (the pipelined body is sent last, 0.6 s after them).
    wait_log "$OUT/client.log" " client raw_send .*what=body" 1 15
    nap 1.4
    logline server kernel_sockets_before_kill note="ss in ssc-server just before the SIGKILL (Recv-Q = unread bytes)" \
      ss="$(ins ss -tnoiH state all "( sport = :$SERVER_PORT )" | ss_join)" >>"$OUT/server.log"
    t0=$(now_iso)
    local src=0
    { kill -KILL "$SERVER_PID"; wait "$SERVER_PID"; } 2>/dev/null || src=$?   # (no "Killed" job notice)
    local t1; t1=$(now_iso)
    logline server kill signal=SIGKILL pid="$SERVER_PID" sent_at="$t0" note="time taken just before kill(2)" >>"$OUT/server.log"
    logline server killed pid="$SERVER_PID" exit_status="$src" sent_at="$t0" reaped_at="$t1" >>"$OUT/server.log"
    local p keep=(); for p in "${PIDS[@]}"; do [[ $p == "$SERVER_PID" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
  fi

  local rc=0; wait $CLIENT_PID || rc=$?
  local p keep=(); for p in "${PIDS[@]}"; do [[ $p == "$CLIENT_PID" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")  # reaped: never signal that pid again
  [[ $rc -eq 0 ]] || { cat "$WORK/client.err" >&2; return 1; }

  # What the kernels do after the client gave up (orphan retransmissions, probes, FIN).
  nap "$POST_WAIT"
  logline client kernel_sockets note="ss in ssc-client after the client exited" \
    ss="$(inc ss -tnoiH state all "( dport = :$PORT )" | ss_join)" >>"$OUT/client.log"
  if [[ $EVENT == vanish ]]; then
    # nstat -s: read only, no history file written
    logline client kernel_counters note="nstat in ssc-client (absolute)" \
      counters="$(inc nstat -asz IcmpInDestUnreachs TcpExtOutOfWindowIcmps TcpExtTCPKeepAlive TcpExtTCPAbortOnTimeout TcpOutRsts 2>/dev/null | awk 'NR>1{print $1"="$2}' | paste -sd, -)" >>"$OUT/client.log"
  fi
  logline server kernel_sockets note="ss in ssc-server before stopping the captures" \
    ss="$(ins ss -tnoiH state all "( sport = :$SERVER_PORT )" | ss_join)" >>"$OUT/server.log"
  inr nft -j list ruleset | "$PY" "$HERE/paths/routerlog.py" counters >"$WORK/counters.log"
  if [[ $EVENT == vanish ]]; then
    logline router server_link_stats dev=r1 note="forwarded into the dead link: TX dropped" \
      stats="$(inr ip -s -s link show r1 | tr -s ' ' | paste -sd'|' -)" neigh="$(inr ip neigh show dev r1 | paste -sd'|' -)" \
      >>"$WORK/counters.log"
  fi

  # Stop the captures before the server: closing its sockets would put FINs (and the
  # router's answers to them) into the captures.
  stop_pids
  grep -hE "packets (captured|received|dropped)" "$WORK"/tcpdump-*.err | sed "s/^/[$SCENARIO] tcpdump: /" >&2 || true
  if [[ $SERVER_KIND == nginx ]]; then
    "$PY" "$HERE/paths/routerlog.py" nginx "$WORK/nginx/access.log" "$WORK/nginx/error.log" >>"$OUT/server.log"
    sort -s -k1,1 -o "$OUT/server.log" "$OUT/server.log"
  fi
  { "$PY" "$HERE/paths/routerlog.py" conntrack "$WORK/ct.raw"; cat "$WORK/counters.log"; } >>"$OUT/router.log"
  [[ -f "$WORK/delay.log" ]] && cat "$WORK/delay.log" >>"$OUT/router.log"
  sort -s -k1,1 -o "$OUT/router.log" "$OUT/router.log"

  topo_down

  show_cmd() { local a out=(); for a in "$@"; do out+=("${a//$ROOT\//}"); done; printf '%q ' "${out[@]}"; }
  "$PY" "$HERE/paths/make_truth.py" "$OUT" --scenario "$SCENARIO" --description "$DESCRIPTION" \
    --server-cmd "ip netns exec $NS_S $(show_cmd "${SERVER_CMD[@]}")" \
    --client-cmd "ip netns exec $NS_C $(show_cmd "${CLIENT_CMD[@]}")" \
    --tcpdump-cmd "ip netns exec $NS_C tcpdump -i c0 -w client.pcap -U -s 0 '$FILTER'; ip netns exec $NS_S tcpdump -i s0 -w server.pcap -U -s 0 '$FILTER'" \
    --record-cmd "lab/record_paths.sh $SCENARIO"
  rm -rf "$WORK"; WORK=""
  echo "[$SCENARIO] wrote captures/lab/$SCENARIO/{client.pcap,server.pcap,client.log,server.log,router.log,truth.json}" >&2
}

for s in "${SCENARIOS[@]}"; do record "$s"; done
ip netns list | grep -qE "^ssc-(client|router|server)" && { echo "namespaces left behind" >&2; exit 1; }

# tshark cross-check of every capture against its truth.json.
if command -v tshark >/dev/null; then
  dirs=(); for s in "${SCENARIOS[@]}"; do dirs+=("$ROOT/captures/lab/$s"); done
  "$PY" "$HERE/paths/verify.py" "${dirs[@]}"
else
  echo "record_paths: tshark not installed; skipped lab/paths/verify.py" >&2
fi
