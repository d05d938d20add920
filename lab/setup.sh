#!/usr/bin/env bash
# Install what the lab needs, only if it is missing, so a clean clone can record:
#   - Node deps from lab/client/package-lock.json (npm ci: exact locked versions)
#   - Python deps from lab/requirements.txt into the repo's .venv
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="$ROOT/.venv/bin/python"

# npm ci when node_modules is absent or older than the lock file.
STAMP="$HERE/client/node_modules/.package-lock.json"
if [[ ! -f "$STAMP" || "$HERE/client/package-lock.json" -nt "$STAMP" ]]; then
  echo "[setup] npm ci in lab/client" >&2
  (cd "$HERE/client" && npm ci --no-audit --no-fund >&2)
fi

if [[ ! -x "$PY" ]]; then
  echo "[setup] creating .venv" >&2
  python3 -m venv "$ROOT/.venv"
fi
if ! "$PY" - "$HERE/requirements.txt" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        ok &= version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
then
  echo "[setup] pip install -r lab/requirements.txt" >&2
  "$PY" -m pip install --quiet -r "$HERE/requirements.txt" >&2
fi
