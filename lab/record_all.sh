#!/usr/bin/env bash
# Record every lab scenario into captures/lab/<scenario>/ (needs root for tcpdump).
# Scenarios use distinct ports, so they are recorded JOBS at a time (default 4;
# more than that on 2 cores delays Node's timers by tens of ms) to
# keep the wall time near the longest scenario (~35 s) times a few instead of the sum (~5 min).
# usage: lab/record_all.sh [SCENARIO ...]     JOBS=1 lab/record_all.sh  (one at a time)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
JOBS="${JOBS:-4}"

"$HERE/setup.sh"   # once, before the parallel runs (npm ci must not run concurrently)

if [[ $# -gt 0 ]]; then SCENARIOS=("$@"); else mapfile -t SCENARIOS < <("$HERE/record.sh" --list); fi
LOGDIR="$(mktemp -d)"
declare -A PIDS=()
failed=()

reap() {  # wait for any one of our jobs, note failures
  local pid name
  wait -n "${!PIDS[@]}" 2>/dev/null || true
  for pid in "${!PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      name="${PIDS[$pid]}"
      if ! wait "$pid"; then failed+=("$name"); fi
      cat "$LOGDIR/$name.log" >&2
      unset "PIDS[$pid]"
    fi
  done
}

for s in "${SCENARIOS[@]}"; do
  while [[ ${#PIDS[@]} -ge $JOBS ]]; do reap; done
  "$HERE/record.sh" "$s" >"$LOGDIR/$s.log" 2>&1 &
  PIDS[$!]="$s"
done
while [[ ${#PIDS[@]} -gt 0 ]]; do reap; done
rm -rf "$LOGDIR"

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "record_all: FAILED: ${failed[*]}" >&2
  exit 1
fi
if command -v tshark >/dev/null; then
  dirs=(); for s in "${SCENARIOS[@]}"; do dirs+=("$ROOT/captures/lab/$s"); done
  "$ROOT/.venv/bin/python" "$HERE/verify.py" "${dirs[@]}"
else
  echo "record_all: tshark not installed; skipped lab/verify.py" >&2
fi
