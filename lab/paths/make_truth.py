"""truth.json for one lab/record_paths.sh scenario, from client.log, server.log and
router.log only (never from the captures), so it can check an analyzer that sees only
client.pcap / server.pcap.

Per connection (client socket, identified by its local port): the requests and what the
client saw (exception class and text, errno), what the server saw, what the router did
(its rule counters and conntrack events for that flow), who really killed the connection
(`killed_by`), who ended it (`ended_by`), and the expected verdict names:
  middlebox_rst      an RST forged by a middlebox in the name of the server
  silent_drop        an established flow black-holed in the path; the client timed out
  refused            SYN answered by RST from the server host (nobody listening)
  syn_unanswered     SYNs dropped in the path; the client's connect timed out
  zero_window_stall  the receiver stopped reading; window 0, probes, client timeout

usage: python lab/paths/make_truth.py OUTDIR --scenario NAME [--description ...]
                                      [--server-cmd ...] [--client-cmd ...] [--tcpdump-cmd ...] [--record-cmd ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from make_truth import parse_line, pcap_linktype  # noqa: E402  (same log format as the lab)

ECONNREFUSED, ECONNRESET = 111, 104


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def read_log(path: Path):
    if not path.exists():
        return []
    return [ev for ev in map(parse_line, path.read_text().splitlines()) if ev]


def first(events, name, **match):
    return next((e for e in events if e["event"] == name and all(e.get(k) == v for k, v in match.items())), None)


def build(outdir: Path, args) -> dict:
    client, server, router = (read_log(outdir / f) for f in ("client.log", "server.log", "router.log"))
    start = first(client, "client_start")
    srv_start = first(server, "server_start")
    listening = first(server, "listening")
    topo = first(router, "topology") or {}
    rcfg = first(router, "router_config") or {}
    counters = {e["rule"]: e["packets"] for e in router if e["event"] == "rule_counter"}
    base = urlsplit(start["base"])
    server_ip, server_port = base.hostname, base.port
    listen_ports = sorted({int(a.rsplit(":", 1)[1]) for a in str(listening.get("ports") or "").split(",") if ":" in a}) \
        if listening else []

    forward_action = rcfg.get("forward_unknown_flow")
    unknown_hits = counters.get("unknown-flow-new-without-syn", 0) + counters.get("unknown-flow-invalid", 0)
    syn_drop_hits = sum(v for k, v in counters.items() if k.startswith("drop-syn-"))

    socks: dict[str, dict] = {}
    reqs: dict[str, dict] = {}
    order: list[str] = []
    for e in client:
        ev = e["event"]
        if ev == "socket_bind":
            socks[e["sock"]] = {"bind": e, "connect": None, "connect_error": None, "close": None, "requests": []}
        elif ev == "socket_connect":
            socks[e["sock"]]["connect"] = e
        elif ev == "socket_connect_error":
            socks[e["sock"]]["connect_error"] = e
        elif ev == "socket_close":
            socks[e["sock"]]["close"] = e
        elif ev == "request_start":
            reqs[e["id"]] = {"start": e, "end": None}
            order.append(e["id"])
        elif ev in ("response", "request_error"):
            reqs[e["id"]]["end"] = e
            if e.get("sock") in socks:
                socks[e["sock"]]["requests"].append(e["id"])

    srv_requests = {e.get("lab_id"): e for e in server if e["event"] == "request"}
    kernel_client = first(client, "kernel_sockets")
    kern = first(client, "kernel") or {}
    kernel_server = first(server, "kernel_sockets")

    connections = []
    for sid, s in socks.items():
        port = s["bind"]["local_port"]
        requests = []
        for rid in s["requests"]:
            st, end = reqs[rid]["start"], reqs[rid]["end"]
            srv = srv_requests.get(rid)
            if srv and srv.get("client_port") != port:
                raise SystemExit(f"{rid}: server saw port {srv.get('client_port')}, client logged {port}")
            requests.append({
                "lab_id": rid, "method": st["method"], "uri": urlsplit(st["url"]).path,
                "body_bytes": st.get("body_bytes"),
                "reused_socket": end.get("reused"),
                "client_sent_at": st["ts"],
                "server_received_at": srv["ts"] if srv else None,
                "status": end.get("status") if end["event"] == "response" else None,
                "outcome": "complete" if end["event"] == "response" else "error",
                "exception": end.get("exc") if end["event"] == "request_error" else None,
                "error": end.get("error") if end["event"] == "request_error" else None,
                "cause": end.get("cause") if end["event"] == "request_error" else None,
                "cause_text": end.get("cause_text") if end["event"] == "request_error" else None,
                "errno": end.get("errno") if end["event"] == "request_error" else None,
                "client_elapsed_s": round(end["elapsed_ms"] / 1000, 4),
                "finished_at": end["ts"],
            })
        failed = next((r for r in requests if r["outcome"] == "error"), None)
        ce = s["connect_error"]
        accept = first(server, "accept", client_port=port)
        queues = [e["unread_bytes"] for e in server if e["event"] == "recv_queue" and e.get("client_port") == port]
        ct = [e for e in router if e["event"] == "ct_event" and str(e.get("client_port")) == str(port)]
        ct_destroy = next((e for e in ct if e.get("type") == "DESTROY"), None)

        expired_by = None
        timeout_s = rcfg.get("ct_tcp_timeout_established_s")
        done = [reqs[r["lab_id"]]["end"] for r in requests if r["outcome"] == "complete"]
        if ct_destroy and done and isinstance(timeout_s, (int, float)):
            # Last packets of the flow: the response and the client's ACK of it.
            expired_by = iso(done[-1]["t"] + timeout_s)

        idle = None
        if failed and len(requests) > 1:
            prev = requests[requests.index(failed) - 1]
            idle = round(reqs[failed["lab_id"]]["start"]["t"] - reqs[prev["lab_id"]]["end"]["t"], 3)

        killed_by = ended_by = mechanism = None
        verdicts: list[str] = []
        why: list[str] = []
        cause_name = (failed or {}).get("cause") or ""
        if ce is not None:
            if ce.get("errno") == ECONNREFUSED:
                killed_by, ended_by, mechanism = "server_host_kernel", "server_host_kernel", "rst_to_syn_no_listener"
                verdicts = ["refused"]
                why.append(f"client connect() failed with errno {ce['errno']} ({ce['error']}); "
                           f"server listens on {listen_ports}, not {server_port}")
            elif "timed out" in str(ce.get("error")) or ce.get("exc") in ("TimeoutError", "timeout"):
                ended_by = "client"
                mechanism = "syn_dropped_in_path" if syn_drop_hits else "syn_unanswered"
                killed_by = "router" if syn_drop_hits else "unknown"
                verdicts = ["syn_unanswered"]
                why.append(f"client connect() timed out after {ce['elapsed_ms']} ms; "
                           f"router drop-syn rule counted {syn_drop_hits} packets; "
                           f"server listens on {listen_ports}, no request logged")
        elif failed:
            seen = failed["server_received_at"] is not None
            if failed.get("errno") == ECONNRESET or "ConnectionResetError" in cause_name:
                if not seen and forward_action and "reject" in forward_action and unknown_hits:
                    killed_by, ended_by, mechanism = "router", "router", "rst_forged_for_forgotten_flow"
                    verdicts = ["middlebox_rst"]
                    why.append(f"client got ECONNRESET on a reused socket after {idle} s idle; the server never "
                               f"logged request {failed['lab_id']}; router rejects unknown flows with a TCP reset "
                               f"({unknown_hits} packets), conntrack established timeout "
                               f"{rcfg.get('ct_tcp_timeout_established_s')} s")
                else:
                    killed_by, ended_by, mechanism = "server", "server", "rst"
            elif "Timeout" in str(failed.get("exception")) or "timed out" in str(failed.get("cause_text")):
                if not seen and forward_action == "drop" and unknown_hits:
                    killed_by, ended_by, mechanism = "router", "client", "established_flow_dropped_in_path"
                    verdicts = ["silent_drop"]
                    why.append(f"client read timed out ({failed['exception']}) on a reused socket after {idle} s "
                               f"idle; the server never logged request {failed['lab_id']}; router drops packets "
                               f"of unknown flows ({unknown_hits} packets), conntrack established timeout "
                               f"{rcfg.get('ct_tcp_timeout_established_s')} s")
            if not verdicts and accept is not None and queues and max(queues) > 0:
                killed_by, ended_by, mechanism = "server_application", "client", "receiver_stopped_reading"
                verdicts = ["zero_window_stall"]
                why.append(f"server accepted port {port} and never read: {max(queues)} bytes left unread in its "
                           f"receive queue; the client gave up on the upload after {failed['client_elapsed_s']} s "
                           f"({failed['exception']}: {failed['cause_text']})")
        connections.append({
            "client_ip": s["bind"]["local_ip"],
            "client_port": port,
            "server_ip": server_ip,
            "server_port": server_port,
            "connected": s["connect"] is not None,
            "connect_error": ({"exception": ce["exc"], "error": ce["error"], "errno": ce.get("errno"),
                               "elapsed_s": round(ce["elapsed_ms"] / 1000, 4), "at": ce["ts"]} if ce else None),
            "requests": requests,
            "client_saw": ((f"{failed['exception']}: {failed['error']}") if failed else
                           (f"{ce['exc']}: {ce['error']}" if ce else None)),
            "idle_before_failed_request_s": idle,
            "client_socket_close": ({k: v for k, v in s["close"].items()
                                     if k.startswith("tcp") or k in ("ts",)} if s["close"] else None),
            "server_saw": {
                "requests": [r["lab_id"] for r in requests if r["server_received_at"]],
                "accept_logged_at": accept["ts"] if accept else None,  # sink.py only
                "max_unread_bytes": max(queues) if queues else None,
            },
            "router": {
                "conntrack_events": [{"at": e["ts"], "type": e["type"], "state": e.get("state")} for e in ct],
                # DESTROY is reported when conntrack notices the expired entry (on the next
                # packet of the flow, or its garbage collector), not at the expiry itself.
                "conntrack_destroy_event_at": ct_destroy["ts"] if ct_destroy else None,
                "conntrack_entry_expired_by": expired_by,
            },
            "killed_by": killed_by,
            "ended_by": ended_by,
            "mechanism": mechanism,
            "expected_verdicts": verdicts,
            "why": why,
        })

    def cap(name):
        p = outdir / name
        return {"file": name, "bytes": p.stat().st_size if p.exists() else None, "link_type": pcap_linktype(p)}

    return {
        "scenario": args.scenario,
        "description": args.description,
        "derived_from": ["client.log", "server.log", "router.log"],
        "captures": {
            "client": {**cap("client.pcap"), "taken_at": "ssc-client c0 (client side of the router)"},
            "server": {**cap("server.pcap"), "taken_at": "ssc-server s0 (server side of the router)"},
        },
        "topology": {
            "client": topo.get("client"), "router": topo.get("router"), "server": topo.get("server"),
            "hops_client_to_server": 1,
            "note": "the server's packets reach the client with TTL 63 (one forwarding hop); packets the "
                    "router itself originates (e.g. a forged RST) arrive with TTL 64",
        },
        "router": {
            "forward_unknown_flow": forward_action,
            "invalid": rcfg.get("invalid"),
            "drop_syn_port": rcfg.get("drop_syn_port"),
            "ct_tcp_timeout_established_s": rcfg.get("ct_tcp_timeout_established_s"),
            "ct_tcp_loose": rcfg.get("ct_tcp_loose"),
            "rule_counters": counters,
        },
        "commands": {
            "record": args.record_cmd,
            "server": args.server_cmd.strip(),
            "tcpdump": args.tcpdump_cmd.strip(),
            "client": args.client_cmd.strip(),
        },
        "recorded_from": start["ts"],
        "server": {"impl": srv_start.get("impl", f"uvicorn {srv_start.get('uvicorn')}"),
                   "ip": srv_start.get("host"), "port": srv_start.get("port"), "listening": listen_ports,
                   "keep_alive_timeout_s": srv_start.get("keep_alive_timeout"),
                   "kernel_sockets_at_end": kernel_server.get("ss") if kernel_server else None},
        "client": {"python": start["python"], "requests": start["requests"], "urllib3": start["urllib3"],
                   "mode": start["mode"], "target": start["base"],
                   "connect_timeout_s": start["connect_timeout_s"], "read_timeout_s": start["read_timeout_s"],
                   "idle_s": start.get("idle_s"), "body_bytes": start.get("body_bytes"),
                   "kernel": {k: v for k, v in kern.items() if k not in ("ts", "t", "source", "event")},
                   "kernel_sockets_after_exit": kernel_client.get("ss") if kernel_client else None},
        "summary": {
            "connections": len(connections),
            "requests": sum(len(c["requests"]) for c in connections),
            "expected_verdicts": sorted({v for c in connections for v in c["expected_verdicts"]}),
            "killed_client_ports": [c["client_port"] for c in connections if c["killed_by"]],
            "errors": sorted({c["client_saw"] for c in connections if c["client_saw"]}),
        },
        "connections": connections,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", type=Path)
    p.add_argument("--scenario", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--server-cmd", default="")
    p.add_argument("--client-cmd", default="")
    p.add_argument("--tcpdump-cmd", default="")
    p.add_argument("--record-cmd", default="")
    args = p.parse_args(argv)
    truth = build(args.outdir, args)
    (args.outdir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    s = truth["summary"]
    print(f"[{args.scenario}] truth: {s['connections']} connections, verdicts {s['expected_verdicts']}, "
          f"killed ports {s['killed_client_ports']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
