#!/usr/bin/env bash
# Record one lab scenario on loopback:
#   server (uvicorn app or stdlib plain server) -> tcpdump -> Node client -> stop -> truth.json
#
# usage: lab/record.sh SCENARIO [OUTDIR]
#        lab/record.sh --list
# OUTDIR defaults to captures/lab/SCENARIO. Needs root (tcpdump) and loopback only.
# Writes OUTDIR/{capture.pcap, client.log, server.log, truth.json} (+ sslkeys.log for https-*).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="$ROOT/.venv/bin/python"

SCENARIOS="before-fix after-fix timeout-3s agent-timeout-3s control-no-timeout control-no-axios control-axios-native keepalive-agent mixed late-rst any-sll2 ipv6 heartbeat https-before-fix https-after-fix"

if [[ "${1:-}" == "--list" ]]; then
  echo "$SCENARIOS" | tr ' ' '\n'
  exit 0
fi
SCENARIO="${1:?usage: lab/record.sh SCENARIO [OUTDIR] (see --list)}"
OUT="${2:-$ROOT/captures/lab/$SCENARIO}"

# ------------------------------------------------------------------ scenarios
# Each scenario gets its own port so several can be recorded at once.
HOST=127.0.0.1
IFACE=lo
SERVER=app            # app (FastAPI/uvicorn) | plain (http.server)
SERVER_ARGS=()
CLIENT_ARGS=()
DESCRIPTION=""
TLS=0                 # 1: HTTPS with a throwaway self-signed certificate and a TLS key log
SNI=lab.sockscope.test
case "$SCENARIO" in
  before-fix)
    PORT=8301; CLIENT_ARGS=(--sessions 3 --axios-timeout 5000 --agent global)
    DESCRIPTION="Incident as it happened: axios GET /files (timeout 5000) then node-fetch GET ?detail=full and POST /exec on the same pooled socket of http.globalAgent; the client destroys it 5 s into the 10 s /exec." ;;
  after-fix)
    PORT=8302; SERVER_ARGS=(--fix); CLIENT_ARGS=(--sessions 3 --axios-timeout 5000 --agent global)
    DESCRIPTION="Server answers GET /files with Connection: close, so every GET ends its socket and POST /exec runs on a fresh socket and completes after 10 s." ;;
  timeout-3s)
    PORT=8303; CLIENT_ARGS=(--sessions 2 --axios-timeout 3000 --agent global)
    DESCRIPTION="axios timeout 3000 instead of 5000 on http.globalAgent. The socket still dies 5 s into /exec: the idle timer that fires is the agent's (5000), axios' only contribution is the socket.destroy listener." ;;
  agent-timeout-3s)
    PORT=8304; CLIENT_ARGS=(--sessions 2 --axios-timeout 3000 --agent keepalive --agent-timeout 3000)
    DESCRIPTION="Explicit keep-alive agent with timeout 3000 plus axios timeout 3000: the pooled socket is destroyed 3 s into /exec, so an analyzer must infer 3 s, not assume 5." ;;
  control-no-timeout)
    PORT=8305; CLIENT_ARGS=(--sessions 2 --axios-timeout 0 --agent global)
    DESCRIPTION="axios WITHOUT a timeout, otherwise before-fix. Still killed 5 s into /exec: axios calls req.setTimeout(0) when no timeout is set, and follow-redirects attaches socket.destroy as a timeout listener even for 0; the globalAgent re-arms 5000 on release." ;;
  control-no-axios)
    PORT=8312; CLIENT_ARGS=(--sessions 2 --no-axios --agent global)
    DESCRIPTION="Control: node-fetch only (GET ?detail=full then POST /exec) on http.globalAgent, socket reused; the agent's 5 s timer fires during /exec but nothing destroys the socket, so /exec completes after 10 s." ;;
  control-axios-native)
    PORT=8313; CLIENT_ARGS=(--sessions 2 --axios-timeout 5000 --axios-max-redirects 0 --agent global)
    DESCRIPTION="Control: axios timeout 5000 but maxRedirects 0, so axios uses Node's http directly instead of follow-redirects; Node clears the request's timeout listener on release, /exec on the reused socket completes after 10 s." ;;
  keepalive-agent)
    PORT=8306; CLIENT_ARGS=(--sessions 2 --axios-timeout 5000 --agent keepalive)
    DESCRIPTION="axios timeout 5000 on an explicit new http.Agent({keepAlive:true}) (no agent timeout): the agent resets the socket timer to 0 on release, so /exec on the reused socket completes although the destroy listener is still attached." ;;
  mixed)
    PORT=8307; SERVER_ARGS=(--keep-alive-timeout 5); CLIENT_ARGS=(--sessions 2 --axios-timeout 5000 --agent global --extra)
    DESCRIPTION="Two killed sessions next to healthy traffic: fast requests on a keep-alive socket that the server closes after its 5 s keep-alive timeout, and a 10 s /exec on a fresh non-pooled socket answered in time." ;;
  late-rst)
    PORT=8308; SERVER=plain; CLIENT_ARGS=(--sessions 2 --axios-timeout 5000 --agent global)
    DESCRIPTION="Before-fix client against the stdlib server, which writes the /exec response 10 s in although the client closed at 5 s; the client's kernel answers with RST." ;;
  any-sll2)
    PORT=8309; IFACE=any; CLIENT_ARGS=(--sessions 3 --axios-timeout 5000 --agent global)
    DESCRIPTION="before-fix recorded with tcpdump -i any (Linux cooked capture v2 link layer)." ;;
  ipv6)
    PORT=8310; HOST=::1; CLIENT_ARGS=(--sessions 3 --axios-timeout 5000 --agent global)
    DESCRIPTION="before-fix over IPv6 loopback (::1)." ;;
  heartbeat)
    PORT=8311; SERVER_ARGS=(--heartbeat); CLIENT_ARGS=(--sessions 2 --axios-timeout 5000 --agent global)
    DESCRIPTION="Same client as before-fix; the server streams a space every 2 s during /exec, so the 5 s idle timer never fires and /exec completes on the reused socket." ;;
  https-before-fix)
    PORT=8314; TLS=1; CLIENT_ARGS=(--sessions 3 --axios-timeout 5000 --agent global --https --servername "$SNI")
    DESCRIPTION="before-fix over HTTPS (TLS 1.3, self-signed certificate made at record time, SNI $SNI): same calls on https.globalAgent (keepAlive, timeout 5000 in Node 20); the client destroys the pooled socket 5 s into /exec. node --tls-keylog wrote sslkeys.log, so tshark can decrypt the requests." ;;
  https-after-fix)
    PORT=8315; TLS=1; SERVER_ARGS=(--fix); CLIENT_ARGS=(--sessions 2 --axios-timeout 5000 --agent global --https --servername "$SNI")
    DESCRIPTION="after-fix over HTTPS: GET /files answered with Connection: close, /exec on a fresh socket completes after 10 s. TLS key log in sslkeys.log." ;;
  *)
    echo "unknown scenario '$SCENARIO'; known: $SCENARIOS" >&2; exit 2 ;;
esac
CLIENT_ARGS+=(--host "$HOST" --port "$PORT")
SERVER_ARGS+=(--host "$HOST" --port "$PORT")

# ------------------------------------------------------------------ prerequisites
[[ $EUID -eq 0 ]] || { echo "record.sh needs root for tcpdump" >&2; exit 1; }
command -v tcpdump >/dev/null || { echo "tcpdump not installed (apt-get install tcpdump)" >&2; exit 1; }
command -v node >/dev/null || { echo "node not installed" >&2; exit 1; }
[[ $TLS -eq 0 ]] || command -v openssl >/dev/null || { echo "openssl not installed (needed for https-*)" >&2; exit 1; }
"$HERE/setup.sh"

# ------------------------------------------------------------------ run
mkdir -p "$OUT"
rm -f "$OUT/capture.pcap" "$OUT/client.log" "$OUT/server.log" "$OUT/truth.json" "$OUT/sslkeys.log"
WORK="$(mktemp -d)"
CLIENT_ENV=()
NODE_OPTS=()
if [[ $TLS -eq 1 ]]; then
  # A throwaway self-signed certificate, made now and deleted with $WORK: its private key
  # is never stored. The client trusts it via NODE_EXTRA_CA_CERTS (no verification is
  # switched off); the TLS secrets of the recorded sessions go to OUTDIR/sslkeys.log.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$SNI" -addext "subjectAltName=DNS:$SNI,IP:127.0.0.1,IP:::1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>"$WORK/openssl.err" \
    || { cat "$WORK/openssl.err" >&2; exit 1; }
  SERVER_ARGS+=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
  CLIENT_ENV=(NODE_EXTRA_CA_CERTS="$WORK/cert.pem")
  NODE_OPTS=(--tls-keylog="$OUT/sslkeys.log")
fi
SERVER_PID=""; TCPDUMP_PID=""
cleanup() {
  # Only the processes this script started, by pid.
  [[ -n "$TCPDUMP_PID" ]] && kill -INT "$TCPDUMP_PID" 2>/dev/null && wait "$TCPDUMP_PID" 2>/dev/null || true
  [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ss -Hltn "sport = :$PORT" | grep -q .; then
  echo "port $PORT is already in use" >&2; exit 1
fi

SERVER_CMD=("$PY" "$HERE/server/$SERVER.py" "${SERVER_ARGS[@]}")
"${SERVER_CMD[@]}" >"$OUT/server.log" 2>"$WORK/server.err" &
SERVER_PID=$!
# Wait for the listening socket without connecting to it (a probe would be a stray
# connection in the server log).
for _ in $(seq 100); do
  ss -Hltn "sport = :$PORT" | grep -q . && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; exit 1; }
  sleep 0.1
done
ss -Hltn "sport = :$PORT" | grep -q . || { echo "server did not start" >&2; cat "$WORK/server.err" >&2; exit 1; }

TCPDUMP_CMD=(tcpdump -i "$IFACE" -w "$OUT/capture.pcap" -U -s 0 -Z root)
[[ "$IFACE" == any ]] && TCPDUMP_CMD+=(-y LINUX_SLL2)
TCPDUMP_CMD+=("tcp port $PORT")
"${TCPDUMP_CMD[@]}" 2>"$WORK/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 100); do
  grep -q "listening on" "$WORK/tcpdump.err" && break
  kill -0 "$TCPDUMP_PID" 2>/dev/null || { cat "$WORK/tcpdump.err" >&2; exit 1; }
  sleep 0.1
done
sleep 0.3

CLIENT_CMD=(node "${NODE_OPTS[@]}" "$HERE/client/client.js" "${CLIENT_ARGS[@]}")
echo "[$SCENARIO] recording on $IFACE port $PORT ..." >&2
env "${CLIENT_ENV[@]}" "${CLIENT_CMD[@]}" >"$OUT/client.log" 2>"$WORK/client.err" || { cat "$WORK/client.err" >&2; exit 1; }

# The server may still be "executing" for a client that left (the incident's
# server-side picture, and the late write in late-rst): wait until every exec_start
# has its exec_end, then a moment for the last FIN/ACK or RST.
for _ in $(seq 250); do
  starts=$(grep -c ' exec_start ' "$OUT/server.log" || true)
  ends=$(grep -c ' exec_end ' "$OUT/server.log" || true)
  [[ "$starts" == "$ends" ]] && break
  sleep 0.1
done
sleep 1

kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" || true; TCPDUMP_PID=""
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
grep -E "packets (captured|received|dropped)" "$WORK/tcpdump.err" | sed "s/^/[$SCENARIO] tcpdump: /" >&2 || true
# Node creates the key log 0600; it only unlocks this throwaway capture, so let any reader use it.
[[ -f "$OUT/sslkeys.log" ]] && chmod 644 "$OUT/sslkeys.log"

rel() { local p="$1"; echo "${p/#$ROOT\//}"; }
# Commands as recorded in truth.json: repo-relative paths, the temporary certificate
# directory shown as \$WORK.
show_cmd() { local a out=(); for a in "$@"; do a="${a//$WORK/\$WORK}"; a="${a//$ROOT\//}"; out+=("$a"); done; printf '%q ' "${out[@]}"; }
"$PY" "$HERE/make_truth.py" "$OUT" \
  --scenario "$SCENARIO" --description "$DESCRIPTION" --interface "$IFACE" \
  --server-cmd "$(show_cmd "${SERVER_CMD[@]}")" \
  --client-cmd "$(show_cmd "${CLIENT_ENV[@]}" "${CLIENT_CMD[@]}")" \
  --tcpdump-cmd "$(printf '%q ' "${TCPDUMP_CMD[@]/#$ROOT\//}")" \
  --record-cmd "lab/record.sh $SCENARIO"
echo "[$SCENARIO] wrote $(rel "$OUT")/{capture.pcap,client.log,server.log,truth.json$([[ $TLS -eq 1 ]] && echo ,sslkeys.log)}" >&2
