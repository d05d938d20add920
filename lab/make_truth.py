"""Build truth.json for one recorded lab scenario from its client.log and server.log.

The truth comes from what the two programs said about themselves, never from looking
at the capture, so it can be used to check an analyzer that only sees the capture.

Log lines (both sides):  <ISO-8601 UTC> <client|server> <event> key=value ...
Values are bare or JSON-quoted strings; "-" means none.

usage: python lab/make_truth.py OUTDIR --scenario NAME [--description ...] [--interface lo]
                                [--server-cmd ...] [--client-cmd ...] [--tcpdump-cmd ...]
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

TOKEN = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
LINKTYPES = {1: "EN10MB", 113: "LINUX_SLL", 276: "LINUX_SLL2", 0: "NULL", 12: "RAW", 101: "RAW"}


def parse_line(line: str):
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or not parts[0][:4].isdigit():
        return None
    ts, source, event = parts[0], parts[1], parts[2]
    fields = {}
    for key, raw in TOKEN.findall(parts[3] if len(parts) > 3 else ""):
        if raw.startswith('"'):
            value = json.loads(raw)
        elif raw == "-":
            value = None
        elif raw in ("true", "false"):
            value = raw == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        fields[key] = value
    return {"ts": ts, "t": parse_ts(ts), "source": source, "event": event, **fields}


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def read_log(path: Path):
    events = []
    for line in path.read_text().splitlines():
        ev = parse_line(line)
        if ev:
            events.append(ev)
    return events


def pcap_linktype(path: Path):
    try:
        head = path.read_bytes()[:24]
    except OSError:
        return None
    if len(head) < 24:
        return None
    magic = head[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        return None
    (network,) = struct.unpack(endian + "I", head[20:24])
    network &= 0x0FFFFFFF
    return LINKTYPES.get(network, str(network))


def build(outdir: Path, args) -> dict:
    client = read_log(outdir / "client.log")
    server = read_log(outdir / "server.log")

    start = next(e for e in client if e["event"] == "client_start")
    srv_start = next(e for e in server if e["event"] == "server_start")
    base = urlsplit(start["base"])
    server_ip, server_port = base.hostname, base.port

    socks: dict[int, dict] = {}

    def sock(sid):
        return socks.setdefault(sid, {"sock": sid, "port": None, "requests": [], "timer": None,
                                      "local_close": None, "peer_fin": None, "close": None,
                                      "connect": None})

    reqs: dict[str, dict] = {}
    for e in client:
        ev = e["event"]
        if ev == "socket_connect":
            s = sock(e["sock"])
            s["port"], s["connect"] = e["local_port"], e
        elif ev == "request_start":
            reqs[e["id"]] = {"start": e, "assigned": None, "end": None}
        elif ev == "socket_assigned":
            reqs[e["id"]]["assigned"] = e
            sock(e["sock"])["requests"].append(e["id"])
        elif ev in ("response", "request_error"):
            reqs[e["id"]]["end"] = e
        elif ev == "socket_timeout":
            sock(e["sock"])["timer"] = sock(e["sock"])["timer"] or e
        elif ev in ("socket_local_destroy", "socket_local_end"):
            sock(e["sock"])["local_close"] = sock(e["sock"])["local_close"] or e
        elif ev == "socket_peer_fin":
            sock(e["sock"])["peer_fin"] = e
        elif ev == "socket_close":
            sock(e["sock"])["close"] = e

    srv_by_lab = {e["lab_id"]: e for e in server if e["event"] == "request" and e.get("lab_id")}
    srv_resp = {}
    for e in server:
        if e["event"] == "response_start":
            srv_resp.setdefault(e["client_port"], []).append(e)
    exec_end = {}
    late_write = set()
    srv_disconnect = {}
    for e in server:
        if e["event"] == "exec_end":
            exec_end.setdefault(e["client_port"], []).append(e)
        elif e["event"] == "late_write":
            late_write.add(e["client_port"])
        elif e["event"] == "client_disconnected":
            srv_disconnect[e["client_port"]] = e

    connections = []
    for s in sorted(socks.values(), key=lambda s: (s["connect"] or {}).get("t", 0)):
        port = s["port"]
        requests = []
        last_activity = s["connect"]["t"] if s["connect"] else None
        for i, rid in enumerate(s["requests"], 1):
            r = reqs[rid]
            st, end = r["start"], r["end"]
            url = urlsplit(st["url"])
            uri = url.path + (f"?{url.query}" if url.query else "")
            srv = srv_by_lab.get(rid, {})
            if srv and srv.get("client_port") != port:
                raise SystemExit(f"{rid}: server saw port {srv.get('client_port')}, client logged {port}")
            item = {
                "index": i,
                "lab_id": rid,
                "session": st.get("session"),
                "step": st.get("step"),
                "library": st.get("lib"),
                "method": st["method"],
                "uri": uri,
                "user_agent": srv.get("user_agent"),
                "reused_socket": r["assigned"].get("reused") if r["assigned"] else None,
                "socket_timeout_ms_at_assign": r["assigned"].get("socket_timeout_ms") if r["assigned"] else None,
                "axios_timeout_ms": st.get("axios_timeout_ms"),
                "client_sent_at": st["ts"],
                "server_received_at": srv.get("ts"),
                "status": end.get("status") if end and end["event"] == "response" else None,
                "error": end.get("error") if end and end["event"] == "request_error" else None,
                "error_code": end.get("code") if end and end["event"] == "request_error" else None,
                "outcome": ("complete" if end and end["event"] == "response" else
                            "error" if end else "unknown"),
                "client_elapsed_s": round(end["elapsed_ms"] / 1000, 6) if end and end.get("elapsed_ms") is not None else None,
                "finished_at": end["ts"] if end else None,
            }
            requests.append(item)
            # Last payload the client knows of: its own request, or the response's end.
            last_activity = max(last_activity or 0, st["t"])
            if end and item["outcome"] == "complete":
                last_activity = max(last_activity, end["t"])

        lc, pf, timer = s["local_close"], s["peer_fin"], s["timer"]
        killed = bool(lc and lc["event"] == "socket_local_destroy" and lc.get("in_use")
                      and any(r["outcome"] == "error" for r in requests))
        last_srv = (srv_resp.get(port) or [{}])[-1]
        close_race = False
        if last_srv.get("connection") == "close" and (pf or lc):
            # The server announced "Connection: close": it closes right after writing
            # the response, and the client ends its side as soon as it has parsed it.
            # Both FINs leave within about a millisecond and either can be first on
            # the wire (both orders occur in after-fix); the logs cannot order them.
            # We credit the side that decided to close and flag the race.
            closer, close_at, close_race = "server", (pf or lc), True
        elif lc and not lc.get("after_peer_fin") and (not pf or lc["t"] <= pf["t"]):
            closer, close_at = "client", lc
        elif pf:
            closer, close_at = "server", pf
        else:
            closer, close_at = None, None

        # Idle before the close from the client's clock (approximate, ~1 ms): last
        # request sent or response received on this socket -> first close.
        if close_at and last_activity is not None:
            # Clamped: the client logs a response only after Node has processed it,
            # which can be just after the close it triggered (Connection: close).
            idle = max(0.0, round(close_at["t"] - last_activity, 3))
        else:
            idle = None

        agents = {r["user_agent"] for r in requests if r["user_agent"]}
        ends = exec_end.get(port, [])
        expected, informational = [], []
        if killed:
            expected.append("client_idle_timeout")
            if port in late_write:
                expected.append("response_after_close")
        elif closer == "server" and requests and all(r["outcome"] == "complete" for r in requests):
            # Server FIN with nothing outstanding. After "Connection: close" that is the
            # agreed end of the exchange; otherwise the server timed out an idle socket.
            if srv_resp.get(port, [{}])[-1].get("connection", "") != "close":
                informational.append("server_idle_close")
        if len(agents) > 1:
            informational.append("connection_reuse")

        axios_timeouts = [r["axios_timeout_ms"] for r in requests if r["library"] == "axios"]
        connections.append({
            "client_ip": server_ip,
            "client_port": port,
            "server_ip": server_ip,
            "server_port": server_port,
            "requests": requests,
            "killed": killed,
            "closer": closer,
            "close_how": (lc["event"].removeprefix("socket_local_") if closer == "client" and lc else
                          "connection_close" if closer == "server" and last_srv.get("connection") == "close" else
                          "peer_fin" if closer == "server" else None),
            "close_race": close_race,
            "closed_at": close_at["ts"] if close_at else None,
            "idle_before_close_s": idle,
            "client_timer": ({"timeout_ms": timer["timeout_ms"], "idle_ms": timer["idle_ms"],
                              "in_use": timer["in_use"], "listeners": timer["timeout_listeners"].split(",")}
                             if timer else None),
            "server_exec_end": [{"at": e["ts"], "client_disconnected": e["client_disconnected"],
                                 "elapsed_s": e["elapsed_s"]} for e in ends],
            "server_saw_disconnect_at": srv_disconnect[port]["ts"] if port in srv_disconnect else None,
            "late_response_written": port in late_write,
            "expected_finding_kinds": expected,
            "informational_finding_kinds": informational,
            "timeout_configured": {
                "axios_timeout_ms": max(axios_timeouts) if axios_timeouts else None,
                "agent": start["agent"],
                "agent_timeout_ms": start["agent_timeout_ms"],
                "timer_that_fired_ms": timer["timeout_ms"] if timer and killed else None,
            },
        })

    killed = [c["client_port"] for c in connections if c["killed"]]
    fired = sorted({c["client_timer"]["timeout_ms"] for c in connections if c["killed"] and c["client_timer"]})
    pcap = outdir / "capture.pcap"
    return {
        "scenario": args.scenario,
        "description": args.description,
        "derived_from": ["client.log", "server.log"],
        "capture": "capture.pcap",
        "capture_bytes": pcap.stat().st_size if pcap.exists() else None,
        "link_type": pcap_linktype(pcap),
        "interface": args.interface,
        "commands": {
            "record": args.record_cmd,
            "server": args.server_cmd.strip(),
            "tcpdump": args.tcpdump_cmd.strip(),
            "client": args.client_cmd.strip(),
        },
        "recorded_from": start["ts"],
        "server": {
            "impl": srv_start.get("impl", "uvicorn " + str(srv_start.get("uvicorn"))),
            "ip": server_ip, "port": server_port,
            "fix_connection_close": srv_start["fix"], "heartbeat": srv_start["heartbeat"],
            "exec_seconds": srv_start["exec_seconds"], "keep_alive_timeout_s": srv_start["keep_alive_timeout"],
        },
        "client": {
            "node": start["node"], "axios": start["axios"], "node_fetch": start["node_fetch"],
            "follow_redirects": start["follow_redirects"], "agent": start["agent"],
            "agent_keep_alive": start["agent_keep_alive"], "agent_timeout_ms": start["agent_timeout_ms"],
            "axios_timeout_ms": start["axios_timeout_ms"], "sessions": start["sessions"], "extra": start["extra"],
            "no_axios": start.get("no_axios", False), "axios_max_redirects": start.get("axios_max_redirects"),
            "think_ms": start["think_ms"],
        },
        "timeout_configured_ms": {
            "axios": None if start.get("no_axios") else (start["axios_timeout_ms"] or None),
            "agent": start["agent_timeout_ms"] or None,
            "fired": fired[0] if len(fired) == 1 else (fired or None),
        },
        "summary": {
            "connections": len(connections),
            "requests": sum(len(c["requests"]) for c in connections),
            "killed_client_ports": killed,
            "healthy_client_ports": [c["client_port"] for c in connections if not c["killed"]],
            "errors": sorted({r["error"] for c in connections for r in c["requests"] if r["error"]}),
        },
        "connections": connections,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", type=Path)
    p.add_argument("--scenario", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--interface", default="lo")
    p.add_argument("--server-cmd", default="")
    p.add_argument("--client-cmd", default="")
    p.add_argument("--tcpdump-cmd", default="")
    p.add_argument("--record-cmd", default="")
    args = p.parse_args(argv)
    truth = build(args.outdir, args)
    (args.outdir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    s = truth["summary"]
    print(f"[{args.scenario}] truth: {s['connections']} connections, {s['requests']} requests, "
          f"killed ports {s['killed_client_ports']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
