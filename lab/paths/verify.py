"""Cross-check a lab/record_paths.sh scenario: do client.pcap and server.pcap show what
truth.json (from the logs) says? Independent of sockscope: tshark fields, simplest reading.

Per connection and expected verdict:
  middlebox_rst      client.pcap: an RST "from the server" whose TTL differs from the server's
                     own packets (router-made: TTL 64 vs 63); server.pcap: no RST, and fewer
                     client payload segments than client.pcap (the failed request never arrived)
  silent_drop        client.pcap: the last client payload is retransmitted >= 3 times and nothing
                     comes back after it; server.pcap: none of those copies, no FIN/RST at all
  refused            client.pcap: SYN answered by RST/ACK from the server IP (TTL 63, i.e. from
                     behind the router); server.pcap: the same RST leaving the server (TTL 64)
  syn_unanswered     client.pcap: >= 2 SYNs, no SYN/ACK, no RST; server.pcap: no packet of the flow
  zero_window_stall  both: the server advertises window 0, the client sends zero-length probes
                     after it, no FIN/RST
  dead_peer          client.pcap: after the last payload, >= TCP_KEEPCNT client segments tshark flags
                     tcp.analysis.keep_alive, the first TCP_KEEPIDLE after the last packet, then
                     TCP_KEEPINTVL apart, then the client's RST; nothing from the server after the
                     vanish (router log time); server.pcap: nothing at all after the vanish
  server_abort       server.pcap: the server's first FIN/RST is of the kind the truth expects (RST
                     where it left data unread), with the client's request unanswered; and all the
                     server's closes of the connections killed together within KILL_SPREAD_S (5 ms;
                     typically ~0.13 ms) of each other
  stale_reuse        server.pcap: the server's FIN, then the client's reused request arriving after
                     it, answered by the server's RST; client.pcap: the request left before the FIN
                     arrived; an earlier request on the connection was answered
  client_idle_close  both: the first FIN is the client's, the last payload before it is the server's
                     answer (nothing outstanding), idle before it within the client's timer (+1 s)
  client_idle_timeout both: the first FIN is the client's, the last payload before it is the client's
                     request (no answer), idle before it = the client's timeout (+-0.2 s)

usage: python lab/paths/verify.py captures/lab/middlebox-rst [more dirs...]   (exit 1 on a mismatch)
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

FIELDS = ["frame.number", "frame.time_relative", "ip.src", "ip.ttl", "ip.id", "tcp.srcport", "tcp.dstport",
          "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset", "tcp.seq_raw", "tcp.len",
          "tcp.window_size", "tcp.analysis.retransmission", "tcp.analysis.keep_alive",
          "tcp.analysis.zero_window_probe", "frame.time_epoch"]


# server-killed: the kernel closes a killed process's sockets one after another (exit_files),
# each FIN run through the routed path in the same context, and close_files() may reschedule
# between descriptors: on the 2-CPU recording VM the woken client threads then run in between.
# Recorded spreads: 0.11-0.14 ms typically, up to 1.8 ms. Anything in ms is "the same instant"
# next to the 2 s the requests waited; 5 ms keeps re-recording from failing on a busy machine.
KILL_SPREAD_S = 0.005


def epoch(ts: str | None) -> float | None:
    return None if not ts else datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def icmp_frames(pcap: Path) -> list[str]:
    """ICMP in the capture (dead-peer's filter keeps it): frame, time, source, type/code."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-n", "-Y", "icmp", "-T", "fields", "-E", "separator=/",
                          "-e", "frame.number", "-e", "frame.time_relative", "-e", "ip.src", "-e", "icmp.type",
                          "-e", "icmp.code"], check=True, capture_output=True, text=True).stdout
    return out.split()


def packets(pcap: Path, client_port: int):
    cmd = ["tshark", "-r", str(pcap), "-n", "-Y", f"tcp.port=={client_port} && !icmp", "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        v = line.split("\t")
        b = lambda s: s in ("1", "True")  # noqa: E731
        rows.append({"frame": int(v[0]), "t": float(v[1]), "src": v[2], "ttl": int(v[3]), "id": v[4],
                     "from_client": int(v[5]) == client_port, "syn": b(v[7]), "ack": b(v[8]), "fin": b(v[9]),
                     "rst": b(v[10]), "seq": int(v[11] or 0), "len": int(v[12] or 0),
                     "win": int(v[13]) if v[13] else None, "retrans": bool(v[14]),
                     "probe": bool(v[15]) or bool(v[16]), "ka": bool(v[15]), "epoch": float(v[17])})
    return rows


def fr(rows) -> str:
    return ",".join(str(p["frame"]) for p in rows) or "-"


def check_conn(d: Path, c: dict) -> list[str]:
    port = c["client_port"]
    cl, sv = packets(d / "client.pcap", port), packets(d / "server.pcap", port)
    problems, notes = [], []
    for verdict in c["expected_verdicts"]:
        if verdict == "middlebox_rst":
            rst = [p for p in cl if p["rst"] and not p["from_client"]]
            own = [p for p in cl if not p["rst"] and not p["from_client"]]
            own_ttl = {p["ttl"] for p in own}
            if not rst:
                problems.append("no RST towards the client in client.pcap")
            elif any(p["ttl"] in own_ttl for p in rst):
                problems.append(f"RST TTL {[p['ttl'] for p in rst]} equals the server's {own_ttl}")
            else:
                notes.append(f"client.pcap RST frame {fr(rst)} TTL {rst[0]['ttl']} IP-ID {rst[0]['id']}; "
                             f"server packets TTL {sorted(own_ttl)} IP-IDs {own[1]['id'] if len(own) > 1 else '-'}..")
            if any(p["rst"] for p in sv):
                problems.append(f"server.pcap has an RST (frames {fr([p for p in sv if p['rst']])})")
            n_cl = len([p for p in cl if p["from_client"] and p["len"]])
            n_sv = len([p for p in sv if p["from_client"] and p["len"]])
            if n_sv >= n_cl:
                problems.append(f"server.pcap has all {n_sv} client payload segments")
            else:
                notes.append(f"client payload segments: client.pcap {n_cl}, server.pcap {n_sv}")
        elif verdict == "silent_drop":
            data = [p for p in cl if p["from_client"] and p["len"]]
            last = data[-1] if data else None
            copies = [p for p in data if last and p["seq"] == last["seq"]]
            first = copies[0] if copies else None
            back = [p for p in cl if not p["from_client"] and first and p["t"] > first["t"]]
            if len(copies) < 4:
                problems.append(f"last request sent {len(copies)} times (want >= 4: original + 3 retransmissions)")
            if back:
                problems.append(f"server->client packets after the request: frames {fr(back)}")
            if any(p["seq"] == first["seq"] and p["len"] for p in sv if p["from_client"]) if first else False:
                problems.append("server.pcap holds the dropped request")
            ends = [p for p in cl + sv if p["fin"] or p["rst"]]
            if any(not p["from_client"] for p in ends):
                problems.append("the server side sent FIN/RST")
            gaps = [round(b["t"] - a["t"], 3) for a, b in zip(copies, copies[1:])]
            if first:
                notes.append(f"client.pcap request frame {first['frame']} sent {len(copies)}x "
                             f"(frames {fr(copies)}), gaps {gaps} s, no answer; "
                             f"FIN/RST: {'client frames ' + fr(ends) if ends else 'none'}")
        elif verdict == "refused":
            syn = [p for p in cl if p["syn"] and not p["ack"]]
            rst = [p for p in cl if p["rst"] and not p["from_client"]]
            srst = [p for p in sv if p["rst"] and not p["from_client"]]
            if not (syn and rst and rst[0]["ack"]):
                problems.append("client.pcap: no SYN answered by RST/ACK")
            elif not (srst and srst[0]["ttl"] == rst[0]["ttl"] + 1):
                problems.append(f"RST not from the server host: TTL client side {rst[0]['ttl']}, "
                                f"server side {[p['ttl'] for p in srst]}")
            else:
                notes.append(f"SYN frame {syn[0]['frame']}, RST/ACK frame {rst[0]['frame']} TTL {rst[0]['ttl']} "
                             f"IP-ID {rst[0]['id']} (server.pcap frame {srst[0]['frame']}, TTL {srst[0]['ttl']})")
        elif verdict == "syn_unanswered":
            syn = [p for p in cl if p["syn"] and not p["ack"]]
            if len(syn) < 2 or any(not p["from_client"] for p in cl):
                problems.append(f"client.pcap: {len(syn)} SYNs, {len(cl) - len(syn)} other packets")
            if sv:
                problems.append(f"server.pcap has {len(sv)} packets of the flow")
            notes.append(f"SYN frames {fr(syn)} at {[round(p['t'], 3) for p in syn]} s, nothing back; "
                         f"server.pcap {len(sv)} packets")
        elif verdict == "zero_window_stall":
            for name, rows in (("client.pcap", cl), ("server.pcap", sv)):
                zw = [p for p in rows if not p["from_client"] and p["win"] == 0 and not p["rst"]]
                probes = [p for p in rows if p["from_client"] and p["len"] == 0 and p["probe"]
                          and zw and p["t"] > zw[0]["t"]]
                if not zw or len(probes) < 2:
                    problems.append(f"{name}: {len(zw)} zero-window segments, {len(probes)} probes")
                elif name == "client.pcap":
                    notes.append(f"window 0 from frame {zw[0]['frame']}; probes frames {fr(probes)} "
                                 f"at {[round(p['t'], 3) for p in probes]} s")
                if any(p["fin"] or p["rst"] for p in rows):
                    problems.append(f"{name}: FIN/RST present")
        elif verdict == "dead_peer":
            ka = c.get("keepalive") or {}
            idle, intvl, cnt = ka.get("tcp_keepidle_s"), ka.get("tcp_keepintvl_s"), ka.get("tcp_keepcnt")
            gone = epoch(c.get("server_vanished_at"))
            data = [p for p in cl if p["len"]]
            last = data[-1] if data else None
            after = [p for p in cl if last and p["frame"] > last["frame"]]
            quiet_from = max((p["t"] for p in cl if last and p["frame"] <= last["frame"] + 1), default=0)
            probes = [p for p in after if p["from_client"] and p["ka"]]
            rst = [p for p in after if p["from_client"] and p["rst"]]
            gaps = [round(b["t"] - a["t"], 3) for a, b in zip(probes, probes[1:])]
            if len(probes) < (cnt or 1):
                problems.append(f"client.pcap: {len(probes)} keep-alive probes (tcp.analysis.keep_alive), want {cnt}")
            else:
                first_after = probes[0]["t"] - quiet_from
                if idle is not None and abs(first_after - idle) > 0.3:
                    problems.append(f"first probe {first_after:.3f} s after the last packet, TCP_KEEPIDLE is {idle}")
                if intvl is not None and any(abs(g - intvl) > 0.3 for g in gaps):
                    problems.append(f"probe gaps {gaps} s, TCP_KEEPINTVL is {intvl}")
            if not rst:
                problems.append("client.pcap: no RST from the client after the probes")
            if gone is not None:
                late = [p for p in cl if not p["from_client"] and p["epoch"] > gone]
                if late:
                    problems.append(f"client.pcap: server packets after the vanish: frames {fr(late)}")
                slate = [p for p in sv if p["epoch"] > gone]
                if slate:
                    problems.append(f"server.pcap: packets after the vanish: frames {fr(slate)}")
            if any(p["from_client"] is False and p["ka"] for p in cl):
                problems.append("client.pcap: the server probed too")
            icmp = icmp_frames(d / "client.pcap")
            notes.append(f"client.pcap: last payload frame {last['frame'] if last else '-'} at "
                         f"{last['t'] if last else 0:.3f} s; keep-alive probes frames {fr(probes)} at "
                         f"{[round(p['t'], 3) for p in probes]} s (gaps {gaps}); client RST frame {fr(rst)} at "
                         f"{[round(p['t'], 3) for p in rst]} s; server.pcap {len(sv)} packets, none after the "
                         f"vanish; ICMP in client.pcap: {icmp or 'none'}")
        elif verdict == "server_abort":
            want = c.get("expected_server_close")
            for name, rows in (("server.pcap", sv), ("client.pcap", cl)):
                ends = [p for p in rows if not p["from_client"] and (p["fin"] or p["rst"])]
                if not ends:
                    problems.append(f"{name}: no FIN/RST from the server")
                    continue
                e = ends[0]
                kind = "RST" if e["rst"] else "FIN"
                if want and kind != want:
                    problems.append(f"{name}: the server's first close is a {kind}, expected {want}")
                answered = [p for p in rows if not p["from_client"] and p["len"] and p["t"] < e["t"]]
                asked = [p for p in rows if p["from_client"] and p["len"] and p["t"] < e["t"]]
                if not asked or answered:
                    problems.append(f"{name}: {len(asked)} client payload segments, {len(answered)} server ones "
                                    f"before the close (want a request with no answer)")
                if name == "server.pcap":
                    c["_server_close_epoch"] = e["epoch"]
                notes.append(f"{name}: server {kind} frame {e['frame']} at {e['t']:.6f} s "
                             f"({len(asked)} request segment(s), no answer)")
        elif verdict == "stale_reuse":
            sfin = [p for p in sv if not p["from_client"] and p["fin"]]
            if not sfin:
                problems.append("server.pcap: no FIN from the server")
            else:
                f = sfin[0]
                req = [p for p in sv if p["from_client"] and p["len"] and p["t"] > f["t"]]
                rst = [p for p in sv if not p["from_client"] and p["rst"] and req and p["t"] >= req[0]["t"]]
                before = [p for p in sv if not p["from_client"] and p["len"] and p["t"] < f["t"]]
                if not req:
                    problems.append("server.pcap: no client request after the server's FIN")
                elif not rst:
                    problems.append("server.pcap: the request after the FIN got no RST")
                if not before:
                    problems.append("server.pcap: no answered request before the FIN")
                if req and rst:
                    notes.append(f"server.pcap: server FIN frame {f['frame']} at {f['t']:.6f} s; reused request "
                                 f"frame {req[0]['frame']} arrives {req[0]['t'] - f['t']:.4f} s later; server RST "
                                 f"frame {rst[0]['frame']} {rst[0]['t'] - req[0]['t']:.6f} s after it")
            cfin = [p for p in cl if not p["from_client"] and p["fin"]]
            creq = [p for p in cl if p["from_client"] and p["len"]]
            if cfin and creq:
                q = [p for p in creq if p["t"] < cfin[0]["t"]][-1:]
                crst = [p for p in cl if not p["from_client"] and p["rst"]]
                if not q or len(creq) < 2 or q[0] is creq[0]:
                    problems.append("client.pcap: the reused request did not leave before the FIN arrived")
                else:
                    notes.append(f"client.pcap: reused request frame {q[0]['frame']} at {q[0]['t']:.6f} s; server "
                                 f"FIN frame {cfin[0]['frame']} arrives {cfin[0]['t'] - q[0]['t']:.4f} s later; "
                                 f"server RST frames {fr(crst)} at {[round(p['t'], 4) for p in crst]} s")
            else:
                problems.append("client.pcap: no server FIN or no request")
        elif verdict in ("client_idle_close", "client_idle_timeout"):
            for name, rows in (("client.pcap", cl), ("server.pcap", sv)):
                fins = [p for p in rows if p["fin"] or p["rst"]]
                if not fins or not fins[0]["from_client"] or fins[0]["rst"]:
                    problems.append(f"{name}: the first FIN/RST is not a client FIN "
                                    f"({'frame ' + str(fins[0]['frame']) if fins else 'none'})")
                    continue
                f = fins[0]
                pay = [p for p in rows if p["len"] and p["t"] < f["t"]]
                last = pay[-1] if pay else None
                idle = f["t"] - last["t"] if last else None
                if verdict == "client_idle_close":
                    ok = last is not None and not last["from_client"]
                    lim = (c.get("client_pool_keepalive_timeout_s") or 4.0)
                    if not ok:
                        problems.append(f"{name}: the last payload before the FIN is the client's (outstanding)")
                    elif not (lim - 0.05 <= idle <= lim + 1.0):
                        problems.append(f"{name}: idle before the FIN {idle:.3f} s, the pool timer is {lim} s")
                    what = "server's answer"
                else:
                    ok = last is not None and last["from_client"]
                    lim = c.get("client_timeout_s") or 0
                    if not ok:
                        problems.append(f"{name}: the last payload before the FIN is the server's (answered)")
                    elif abs(idle - lim) > 0.2:
                        problems.append(f"{name}: idle before the FIN {idle:.3f} s, the client's timeout is {lim} s")
                    what = "client's request"
                if last is not None:
                    notes.append(f"{name}: last payload frame {last['frame']} ({what}) at {last['t']:.6f} s; client "
                                 f"FIN frame {f['frame']} at {f['t']:.6f} s: {idle:.4f} s idle")
        else:
            problems.append(f"unknown verdict {verdict}")
    return problems, notes


def check(d: Path) -> bool:
    truth = json.loads((d / "truth.json").read_text())
    ok = True
    print(f"== {d.name}: client.pcap {truth['captures']['client']['bytes']} B, "
          f"server.pcap {truth['captures']['server']['bytes']} B")
    for c in truth["connections"]:
        problems, notes = check_conn(d, c)
        ok &= not problems
        status = "ok" if not problems else "MISMATCH " + "; ".join(problems)
        print(f"   port {c['client_port']} {c['expected_verdicts']} killed_by={c['killed_by']} -> {status}")
        for n in notes:
            print(f"      {n}")
    together = [c for c in truth["connections"] if c.get("killed_together")]
    if together:
        closes = {c["client_port"]: c.get("_server_close_epoch") for c in together}
        known = [t for t in closes.values() if t is not None]
        spread = (max(known) - min(known)) if known else None
        good = len(known) == len(together) and spread is not None and spread <= KILL_SPREAD_S
        ok &= good
        print(f"   killed together: server.pcap closes of ports {sorted(closes)} within "
              f"{'-' if spread is None else f'{spread * 1e6:.0f} µs'} -> "
              f"{'ok' if good else f'MISMATCH (want <= {KILL_SPREAD_S * 1e3:g} ms)'}")
    return ok


def main(argv) -> int:
    dirs = [Path(a) for a in argv]
    if not dirs or any(a.startswith("-") for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if all([check(d) for d in dirs]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
