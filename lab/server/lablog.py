"""Log lines of the lab programs: ISO-8601 UTC timestamp first, then who, the event and
key=value pairs.

Shared by app.py (FastAPI), plain.py (stdlib only) and the path lab's client
(lab/paths/client.py), so this module uses only the stdlib.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def log(event: str, _who: str = "server", **fields) -> None:
    # key=value with JSON-quoted values that need it, so a line is easy to split and
    # a path with spaces, quotes or a newline still parses.
    parts = [utc_now(), _who, event]
    for key, value in fields.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "-"
        elif isinstance(value, (int, float)):
            text = str(value)
        else:
            text = str(value)
            if not text or any(c in text for c in ' "=\t\n'):
                text = json.dumps(text)
        parts.append(f"{key}={text}")
    print(" ".join(parts), flush=True)
