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
  dead_peer          the peer's host vanished; the prober's TCP keep-alive probes went
                     unanswered and its kernel gave up (RST, ETIMEDOUT)
  server_abort       the server process died (SIGKILL) with a request outstanding: its
                     kernel closed the socket (FIN, or RST where data was left unread)
  stale_reuse        a request on a pooled socket crossed the server's keep-alive close
  client_idle_close  (look-alike, nothing failed) the client's pool closed an idle socket
  client_idle_timeout the client's request timer destroyed the socket while it waited

Each connection also says `lookalike` (true when the close is by design and nothing failed).
The facts each branch uses are listed in its `why`.

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

ECONNREFUSED, ECONNRESET, ETIMEDOUT = 111, 104, 110


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def read_log(path: Path):
    if not path.exists():
        return []
    return [ev for ev in map(parse_line, path.read_text().splitlines()) if ev]


def first(events, name, **match):
    return next((e for e in events if e["event"] == name and all(e.get(k) == v for k, v in match.items())), None)


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def ss_sockets(line: dict | None) -> dict[int, dict]:
    """`ss -tnoiH` as logged (sockets joined by '|'): client port -> state, Recv-Q, Send-Q."""
    out = {}
    for entry in str((line or {}).get("ss") or "").split("|"):
        f = entry.split()
        if len(f) >= 5 and ":" in f[4]:
            try:
                out[int(f[4].rsplit(":", 1)[1])] = {"state": f[0], "recv_q": int(f[1]), "send_q": int(f[2])}
            except ValueError:
                continue
    return out


# client_start fields of the newer modes, copied into truth["client"] when present
CLIENT_OPTIONS = ("keepidle_s", "keepintvl_s", "keepcnt", "watch_s", "parallel", "path", "pipelined",
                  "pipelined_body_bytes", "reuse_after_ms", "agent_keepalive_msecs", "linger_ms",
                  "agent_keepalive", "agent_timeout_ms", "request_timeout_ms", "note")


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
    sock_events: dict[str, list] = {}
    for e in client:
        ev = e["event"]
        if e.get("sock") is not None and ev.startswith("socket_") or ev in ("keepalive_probes", "watch_end"):
            sock_events.setdefault(e.get("sock"), []).append(e)
        if ev == "socket_bind":
            socks[e["sock"]] = {"bind": e, "connect": None, "connect_error": None, "close": None, "requests": []}
        elif ev == "socket_connect":
            if e["sock"] not in socks:      # Node: the port is known once connected
                socks[e["sock"]] = {"bind": e, "connect": None, "connect_error": None, "close": None, "requests": []}
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
        elif ev in ("request_sent", "request_timeout", "response_complete"):
            if e.get("id") in reqs:
                reqs[e["id"]][ev] = e

    srv_requests = {e.get("lab_id"): e for e in server if e["event"] == "request"}
    kernel_client = first(client, "kernel_sockets")
    kern = first(client, "kernel") or {}
    kernel_server = first(server, "kernel_sockets")
    kernel_counters = first(client, "kernel_counters")
    vanished = first(server, "host_vanished")
    kill = first(server, "kill")
    killed = first(server, "killed")
    before_kill = ss_sockets(first(server, "kernel_sockets_before_kill"))
    delayed = [e for e in router if e["event"] == "delayed"]
    delay_cfg = first(router, "delay_line") or first(router, "netem")
    srv_ka = srv_start.get("keep_alive_timeout") if srv_start else None
    # ports the server (process) was serving when it was killed: a request logged before the kill
    kill_t = parse_ts(kill["sent_at"]) if kill else None
    served_at_kill = sorted({e["client_port"] for e in server if kill and e["event"] in ("request", "exec_start")
                             and e["t"] < kill_t}) if kill else []

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
        if failed and requests.index(failed) > 0:
            prev = requests[requests.index(failed) - 1]
            idle = round(reqs[failed["lab_id"]]["start"]["t"] - reqs[prev["lab_id"]]["end"]["t"], 3)

        killed_by = ended_by = mechanism = None
        verdicts: list[str] = []
        why: list[str] = []
        extra: dict = {}
        lookalike = False
        cause_name = (failed or {}).get("cause") or ""
        sev = sock_events.get(sid, [])
        ka_cfg = next((e for e in sev if e["event"] == "socket_keepalive"), None)
        sock_err = next((e for e in sev if e["event"] == "socket_error"), None)
        peer_fin = next((e for e in sev if e["event"] == "socket_peer_fin"), None)
        local_close = next((e for e in sev if e["event"] in ("socket_local_destroy", "socket_local_end")), None)
        fin_reqs = [reqs[r["lab_id"]] for r in requests]
        failed_raw = reqs[failed["lab_id"]] if failed else None
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
        elif sock_err is not None and sock_err.get("errno") == ETIMEDOUT and ka_cfg is not None and not failed:
            # an idle pooled socket the client's own keep-alive probed to death
            probes = [e for e in sev if e["event"] == "keepalive_probes" and (e.get("tcpi_probes") or 0) > 0]
            last_done = reqs[requests[-1]["lab_id"]]["end"] if requests else None
            killed_by = "server_host_gone" if vanished else "network"
            ended_by, mechanism = "client_kernel", "keepalive_probes_unanswered"
            verdicts = ["dead_peer"]
            extra["prober"] = "client"
            extra["keepalive"] = {
                "set_by": "client (setsockopt on its own socket, through urllib3 socket_options)",
                "so_keepalive": ka_cfg.get("so_keepalive"), "tcp_keepidle_s": ka_cfg.get("tcp_keepidle_s"),
                "tcp_keepintvl_s": ka_cfg.get("tcp_keepintvl_s"), "tcp_keepcnt": ka_cfg.get("tcp_keepcnt"),
                "probe_counter_seen_at": [{"at": e["ts"], "tcpi_probes": e["tcpi_probes"]} for e in probes],
                "probes_sent": max((e["tcpi_probes"] for e in probes), default=0),
                "expected_first_probe_at": iso(last_done["t"] + ka_cfg["tcp_keepidle_s"]) if last_done else None,
                "expected_give_up_at": iso(last_done["t"] + ka_cfg["tcp_keepidle_s"]
                                           + ka_cfg["tcp_keepcnt"] * ka_cfg["tcp_keepintvl_s"]) if last_done else None,
                "kernel_gave_up_at": sock_err["ts"],
                "client_error": {"errno": sock_err.get("errno"), "exception": sock_err.get("exc"),
                                 "error": sock_err.get("error"), "tcp_state_after": sock_err.get("tcp_state")},
                "on_give_up": "Linux sends an RST (tcp_keepalive_timer: tcp_send_active_reset, then tcp_write_err)",
            }
            if vanished:
                extra["server_vanished_at"] = vanished.get("started_at") or vanished["ts"]
                extra["server_vanished_by"] = vanished.get("command")
            if kernel_counters:
                extra["client_kernel_counters"] = kernel_counters.get("counters")
            link = first(router, "server_link_stats")
            if link:
                parts = [x.strip() for x in str(link.get("stats") or "").split("|")]
                tx = next((i for i, x in enumerate(parts) if x.startswith("TX: bytes packets errors dropped")), None)
                nums = parts[tx + 1].split() if tx is not None and tx + 1 < len(parts) else []
                extra["router_after"] = {
                    "server_side_link": "NO-CARRIER" if "NO-CARRIER" in parts[0] else parts[0][:60],
                    "tx_packets": int(nums[1]) if len(nums) > 3 else None,
                    "tx_dropped": int(nums[3]) if len(nums) > 3 else None,
                    "neighbour": link.get("neigh"),
                    "note": "tx_dropped: what the router tried to send into the dead link (its ARP solicitations "
                            "for the server among them); the neighbour entry was flushed when the link lost carrier, "
                            "so the probes waited for an address resolution that failed, and the router answered the "
                            "queued packets with ICMP host unreachable (IcmpInDestUnreachs in "
                            "client_kernel_counters; the client's kernel gave up on its own timer all the same)",
                }
            why.append(f"client set SO_KEEPALIVE with TCP_KEEPIDLE {ka_cfg.get('tcp_keepidle_s')} s, TCP_KEEPINTVL "
                       f"{ka_cfg.get('tcp_keepintvl_s')} s, TCP_KEEPCNT {ka_cfg.get('tcp_keepcnt')} on port {port}; "
                       f"request {requests[-1]['lab_id'] if requests else '-'} completed at "
                       f"{last_done['ts'] if last_done else '-'}; the server's host left the network at "
                       f"{extra.get('server_vanished_at')} ({extra.get('server_vanished_by')}); TCP_INFO counted "
                       f"{extra['keepalive']['probes_sent']} unanswered probes; at {sock_err['ts']} the idle socket "
                       f"failed with errno {sock_err.get('errno')} ({sock_err.get('error')}), state "
                       f"{sock_err.get('tcp_state')}")
        elif failed and kill and port in served_at_kill and failed_raw["end"]["t"] >= kill_t:
            bk = before_kill.get(port, {})
            unread = bk.get("recv_q")
            killed_by, ended_by, mechanism = "server", "server_host_kernel", "server_process_killed"
            verdicts = ["server_abort"]
            extra.update({
                "server_killed_at": kill["sent_at"], "kill_signal": kill.get("signal"),
                "server_exit_status": killed.get("exit_status") if killed else None,
                "killed_together": True, "killed_together_with_ports": [p for p in served_at_kill if p != port],
                "server_unread_bytes_at_kill": unread,
                "expected_server_close": "RST" if unread else "FIN",
                "expected_close_reason": ("the kernel resets a socket closed with unread data in its receive queue"
                                          if unread else "the kernel closes the dead process's socket with a FIN"),
            })
            pending = [r["lab_id"] for r in requests if r["outcome"] == "error"]
            why.append(f"server logged request(s) {[r['lab_id'] for r in requests if r['server_received_at']]} on "
                       f"port {port} before it was killed ({kill.get('signal')} at {kill['sent_at']}, exit status "
                       f"{extra['server_exit_status']}); ss just before the kill: {bk.get('state')} with Recv-Q "
                       f"{unread}; the client's request(s) {pending} failed at {failed['finished_at']}: "
                       f"{failed['exception']}: {failed['error']}; the same kill ended ports {served_at_kill}")
        elif failed and peer_fin is not None and failed.get("reused_socket") and failed["server_received_at"] is None \
                and failed_raw.get("request_sent") and peer_fin["t"] >= failed_raw["request_sent"]["t"]:
            sent = failed_raw["request_sent"]
            prev = reqs[requests[requests.index(failed) - 1]["lab_id"]] if requests.index(failed) > 0 else None
            srv_prev = srv_requests.get(prev["start"]["id"]) if prev else None
            killed_by, ended_by, mechanism = "server", "server", "keepalive_close_crossed_reused_request"
            verdicts = ["stale_reuse"]
            # router: when the server's FIN and the client's request passed it (the delay line's own log)
            fin_at_router = next((e for e in delayed if str(e.get("dst", "")).endswith(f":{port}")
                                  and "F" in str(e.get("flags"))), None)
            req_at_router = next((e for e in delayed if str(e.get("src", "")).endswith(f":{port}")
                                  and (e.get("len") or 0) > 0 and parse_ts(e["queued_at"]) >= sent["t"] - 0.001), None)
            rst_at_router = next((e for e in delayed if str(e.get("dst", "")).endswith(f":{port}")
                                  and "R" in str(e.get("flags"))), None)
            one_way = (delay_cfg or {}).get("delay_each_way_ms")
            extra.update({
                "server_keepalive_timeout_s": srv_ka,
                "server_logged_previous_request_at": srv_prev["ts"] if srv_prev else None,
                "server_keepalive_close_expected_at": iso(srv_prev["t"] + srv_ka) if srv_prev and srv_ka else None,
                "path_delay_each_way_ms": one_way,
                "client_request_sent_at": sent["ts"],
                "client_saw_server_fin_at": peer_fin["ts"],
                "server_fin_passed_router_at": fin_at_router["queued_at"] if fin_at_router else None,
                "request_passed_router_at": req_at_router["queued_at"] if req_at_router else None,
                "request_reached_server_at": req_at_router["ts"] if req_at_router else None,
                "server_rst_passed_router_at": rst_at_router["queued_at"] if rst_at_router else None,
                "request_sent_after_server_fin_s": round(sent["t"] - parse_ts(fin_at_router["queued_at"]), 4)
                if fin_at_router else None,
                "server_fin_reached_client_after_request_s": round(peer_fin["t"] - sent["t"], 4),
            })
            why.append(f"request {failed['lab_id']} went out on the pooled socket (port {port}) at {sent['ts']}, "
                       f"{idle} s after the previous response; the server ({srv_start.get('impl')}, keep-alive "
                       f"timeout {srv_ka} s) logged the previous request at {extra['server_logged_previous_request_at']} "
                       f"and never this one; its FIN passed the router at {extra['server_fin_passed_router_at']} "
                       f"(router log), {extra['request_sent_after_server_fin_s']} s before the client sent; the client "
                       f"saw the FIN at {peer_fin['ts']}, after sending; then {failed['exception']}: {failed['error']}")
        elif failed and failed_raw.get("request_timeout") and local_close is not None and not local_close.get("after_peer_fin"):
            to = failed_raw["request_timeout"]
            sent = failed_raw.get("request_sent")
            killed_by, ended_by, mechanism = "client", "client", "request_timeout_destroyed_socket"
            verdicts = ["client_idle_timeout"]
            srv_disc = first(server, "client_disconnected", client_port=port)
            extra.update({
                "client_timer": f"req.setTimeout({to.get('timeout_ms')}) then req.destroy()",
                "client_timeout_s": to.get("timeout_ms") / 1000 if to.get("timeout_ms") else None,
                "client_request_sent_at": sent["ts"] if sent else None,
                "client_timer_fired_at": to["ts"], "client_destroyed_socket_at": local_close["ts"],
                "idle_before_close_s": round(local_close["t"] - sent["t"], 4) if sent else None,
                "server_saw_disconnect_at": srv_disc["ts"] if srv_disc else None,
            })
            why.append(f"request {failed['lab_id']} ({failed['method']} {failed['uri']}) fully sent at "
                       f"{extra['client_request_sent_at']}; the client's request timer ({to.get('timeout_ms')} ms) "
                       f"fired at {to['ts']} ({to.get('idle_ms')} ms idle) and destroyed the socket at "
                       f"{local_close['ts']} before any response or peer FIN; client saw {failed['exception']}: "
                       f"{failed['error']}; server logged the request at {failed['server_received_at']} and the "
                       f"disconnect at {extra['server_saw_disconnect_at']}")
        elif not failed and requests and local_close is not None and not local_close.get("after_peer_fin") \
                and all(r["outcome"] == "complete" for r in requests):
            last = fin_reqs[-1]
            done_ev = last.get("response_complete") or last["end"]
            killed_by, ended_by, mechanism = "client", "client", "pool_idle_timeout"
            verdicts = ["client_idle_close"]
            lookalike = True
            extra.update({
                "client_timer": local_close.get("reason"),
                "client_pool_keepalive_timeout_s": 4.0 if "undici" in str(start.get("lib")) else None,
                "last_response_complete_at": done_ev["ts"], "client_closed_socket_at": local_close["ts"],
                "idle_before_close_s": round(local_close["t"] - done_ev["t"], 4),
                "outstanding_requests_at_close": 0,
            })
            why.append(f"all {len(requests)} request(s) on port {port} completed (last at {done_ev['ts']}); the "
                       f"client closed the idle socket itself at {local_close['ts']} "
                       f"({extra['idle_before_close_s']} s later, reason: {local_close.get('reason')}) before any "
                       f"peer FIN, with nothing outstanding: by design, nothing failed")
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
                           (f"{ce['exc']}: {ce['error']}" if ce else
                            (f"{sock_err.get('exc')}: {sock_err.get('error')} (on the idle pooled socket, no request "
                             f"outstanding)" if sock_err and sock_err.get("errno") == ETIMEDOUT else None))),
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
            "lookalike": lookalike,
            **extra,
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
                   **({"vanished": {"at": vanished.get("started_at"), "how": vanished.get("command")}}
                      if vanished else {}),
                   **({"killed": {"at": kill.get("sent_at"), "signal": kill.get("signal"),
                                  "exit_status": killed.get("exit_status") if killed else None,
                                  "serving_ports": served_at_kill,
                                  "sockets_before_kill": {str(k): v for k, v in before_kill.items()}}}
                      if kill else {}),
                   "kernel_sockets_at_end": kernel_server.get("ss") if kernel_server else None},
        "client": {**({"python": start["python"], "requests": start["requests"], "urllib3": start["urllib3"]}
                      if "python" in start else
                      {"node": start.get("node"), "undici": start.get("undici"), "lib": start.get("lib"),
                       "agent": start.get("agent")}),
                   "mode": start["mode"], "target": start["base"],
                   "connect_timeout_s": start.get("connect_timeout_s"), "read_timeout_s": start.get("read_timeout_s"),
                   "idle_s": start.get("idle_s"), "body_bytes": start.get("body_bytes"),
                   **{k: start[k] for k in CLIENT_OPTIONS if k in start},
                   **({"request_count": start["requests"]} if "python" not in start and "requests" in start else {}),
                   "kernel": {k: v for k, v in kern.items() if k not in ("ts", "t", "source", "event")},
                   "kernel_sockets_after_exit": kernel_client.get("ss") if kernel_client else None},
        **({"path_delay": {k: v for k, v in delay_cfg.items() if k not in ("t", "source")}} if delay_cfg else {}),
        "summary": {
            "connections": len(connections),
            "requests": sum(len(c["requests"]) for c in connections),
            "expected_verdicts": sorted({v for c in connections for v in c["expected_verdicts"]}),
            "killed_client_ports": [c["client_port"] for c in connections if c["killed_by"]],
            "lookalike_client_ports": [c["client_port"] for c in connections if c["lookalike"]],
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
