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

usage: python lab/paths/verify.py captures/lab/middlebox-rst [more dirs...]   (exit 1 on a mismatch)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIELDS = ["frame.number", "frame.time_relative", "ip.src", "ip.ttl", "ip.id", "tcp.srcport", "tcp.dstport",
          "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset", "tcp.seq_raw", "tcp.len",
          "tcp.window_size", "tcp.analysis.retransmission", "tcp.analysis.keep_alive",
          "tcp.analysis.zero_window_probe"]


def packets(pcap: Path, client_port: int):
    cmd = ["tshark", "-r", str(pcap), "-n", "-Y", f"tcp.port=={client_port}", "-T", "fields",
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
                     "probe": bool(v[15]) or bool(v[16])})
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
    return ok


def main(argv) -> int:
    dirs = [Path(a) for a in argv]
    if not dirs:
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if all([check(d) for d in dirs]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
