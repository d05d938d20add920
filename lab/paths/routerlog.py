"""Log lines for lab/record_paths.sh, in the lab's format
(<ISO-8601 UTC, microseconds> <source> <event> key=value ...).

  routerlog.py line SOURCE EVENT [key=value ...]   one line, timestamped now
  routerlog.py conntrack RAW                         `conntrack -E -o timestamp` output -> ct_event lines
  routerlog.py counters                              `nft -j list ruleset` on stdin -> rule_counter lines
                                                     (rules identified by their comment)
  routerlog.py nginx ACCESS_LOG [ERROR_LOG]          nginx's own logs -> server.log lines: the access
                                                     log (log_format lab: $msec first) as `request`
                                                     events, error-log lines as `nginx_error_log`
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
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


TOKEN = re.compile(r'(\w+)=("[^"]*"|\S*)')
ERRLOG = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(\w+)\] (\d+)#\d+: (.*)$")


def nginx(access: str, error: str | None) -> None:
    for line in open(access, encoding="utf-8", errors="replace") if os.path.exists(access) else []:
        head, _, rest = line.strip().partition(" ")
        event, _, rest = rest.partition(" ")
        try:
            t = float(head)
        except ValueError:
            continue
        fields = {}
        for k, v in TOKEN.findall(rest):
            v = v[1:-1] if v.startswith('"') else v
            fields[k] = None if v in ("-", "") else v
        # $msec is the time nginx wrote the log line: after the response was sent
        emit(iso(t), "server", event, {**fields, "ts_source": "nginx $msec (ms)"})
    if error and os.path.exists(error):
        for line in open(error, encoding="utf-8", errors="replace"):
            m = ERRLOG.match(line.strip())
            if not m:
                continue
            t = time.mktime(time.strptime(m.group(1), "%Y/%m/%d %H:%M:%S"))  # nginx writes local time
            emit(iso(t), "server", "nginx_error_log", {"level": m.group(2), "pid": m.group(3),
                                                      "text": m.group(4), "ts_precision_s": 1})


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
    elif argv[0] == "nginx":
        nginx(argv[1], argv[2] if len(argv) > 2 else None)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
