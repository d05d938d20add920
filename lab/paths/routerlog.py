"""Log lines for lab/record_paths.sh, in the lab's format
(<ISO-8601 UTC, microseconds> <source> <event> key=value ...).

  routerlog.py line SOURCE EVENT [key=value ...]   one line, timestamped now
  routerlog.py conntrack RAW                         `conntrack -E -o timestamp` output -> ct_event lines
  routerlog.py counters                              `nft -j list ruleset` on stdin -> rule_counter lines
                                                     (rules identified by their comment)
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone


def iso(t: float | None = None) -> str:
    dt = datetime.now(timezone.utc) if t is None else datetime.fromtimestamp(t, timezone.utc)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def fmt(value) -> str:
    if value is None:
        return "-"
    text = str(value)
    if not text or any(c in text for c in ' "=\t\n'):
        text = json.dumps(text)
    return text


def emit(ts: str, source: str, event: str, fields: dict) -> None:
    print(" ".join([ts, source, event] + [f"{k}={fmt(v)}" for k, v in fields.items()]), flush=True)


CT = re.compile(r"^\[(\d+\.\d+)\]\s+\[(\w+)\]\s+(\w+)\s+\d+\s+(?:(\d+)\s+)?(?:([A-Z_]+)\s+)?(.*)$")


def conntrack(path: str) -> None:
    for line in open(path, encoding="utf-8", errors="replace"):
        m = CT.match(line.strip())
        if not m:
            continue
        ts, kind, proto, timeout, state, rest = m.groups()
        kv = re.findall(r"(\w+)=(\S+)", rest)
        flags = re.findall(r"\[(\w+)\]", rest)
        tup = [dict(kv[i:i + 4]) for i in (0, 4)] if len(kv) >= 8 else [dict(kv), {}]
        o = tup[0]
        emit(iso(float(ts)), "router", "ct_event", {
            "type": kind, "proto": proto, "state": state, "timeout_s": timeout,
            "orig": f"{o.get('src')}:{o.get('sport')}->{o.get('dst')}:{o.get('dport')}",
            "client_port": o.get("sport"), "flags": ",".join(flags) or None})


def counters() -> None:
    data = json.load(sys.stdin)
    ts = iso()
    for item in data.get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        packets = bytes_ = 0
        for expr in rule.get("expr", []):
            if "counter" in expr and isinstance(expr["counter"], dict):
                packets, bytes_ = expr["counter"].get("packets", 0), expr["counter"].get("bytes", 0)
        emit(ts, "router", "rule_counter", {"chain": rule.get("chain"), "rule": rule["comment"],
                                            "packets": packets, "bytes": bytes_})


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "line":
        source, event = argv[1], argv[2]
        fields = dict(a.split("=", 1) for a in argv[3:])
        emit(iso(), source, event, fields)
    elif argv[0] == "conntrack":
        conntrack(argv[1])
    elif argv[0] == "counters":
        counters()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
