"""Log lines of the lab servers: ISO-8601 UTC timestamp first, then key=value pairs.

Shared by app.py (FastAPI) and plain.py (stdlib only), so this module uses only the stdlib.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def log(event: str, **fields) -> None:
    # key=value with JSON-quoted values that need it, so a line is easy to split and
    # a path with spaces or quotes still parses.
    parts = [utc_now(), "server", event]
    for key, value in fields.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "-"
        elif isinstance(value, (int, float)):
            text = str(value)
        else:
            text = str(value)
            if not text or any(c in text for c in ' "=\t'):
                text = json.dumps(text)
        parts.append(f"{key}={text}")
    print(" ".join(parts), flush=True)
