#!/usr/bin/env bash
# Record the before-fix incident twice at once: one plain capture and one rotated every
# 4 s by tcpdump itself (-G), into captures/lab/rotated/. Root (tcpdump), loopback only.
# The test compares sockscope's tables of the pieces with those of the whole file.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE/../captures/lab/rotated}"
PORT=8398
PY="$HERE/../.venv/bin/python"
bash "$HERE/setup.sh"
mkdir -p "$OUT" && rm -f "$OUT"/*.pcap
"$PY" "$HERE/server/app.py" --port "$PORT" >"$OUT/server.log" 2>/dev/null & SERVER=$!
sleep 2
tcpdump -i lo -U -s 0 -Z root -w "$OUT/whole.pcap" "tcp port $PORT" 2>/dev/null & T1=$!
tcpdump -i lo -U -s 0 -Z root -G 4 -w "$OUT/dump-%H%M%S.pcap" "tcp port $PORT" 2>/dev/null & T2=$!
sleep 1.5
(cd "$HERE/client" && node client.js --sessions 2 --port "$PORT" --axios-timeout 5000 --agent global) >"$OUT/client.log" 2>&1 || true
sleep 1
kill -INT "$T1" "$T2"; wait "$T1" "$T2" 2>/dev/null || true
kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
ls -l "$OUT"
