"""Cross-check a recorded lab scenario: does the capture show what truth.json says?

Independent of sockscope on purpose: it asks tshark for per-packet fields and applies
the simplest possible reading (first FIN/RST wins, keep-alive probes are not payload),
then compares per client port with truth.json (which came from the programs' logs).

HTTPS scenarios (a ``sslkeys.log`` next to the capture) are decrypted with that key log.

usage: python lab/verify.py captures/lab/before-fix [more dirs...]
exit status 1 if any check fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIELDS = ["frame.number", "frame.time_epoch", "tcp.srcport", "tcp.dstport", "tcp.flags.syn",
          "tcp.flags.fin", "tcp.flags.reset", "tcp.len", "tcp.analysis.keep_alive",
          "http.request.method", "http.request.uri"]


def packets(pcap: Path, port: int):
    keylog = pcap.parent / "sslkeys.log"
    if keylog.exists():  # HTTPS: TLS on this port, HTTP inside it (found by tshark's heuristic)
        decode = ["-d", f"tcp.port=={port},tls", "-o", f"tls.keylog_file:{keylog}"]
    else:
        decode = ["-d", f"tcp.port=={port},http"]
    cmd = ["tshark", "-r", str(pcap), "-n", *decode, "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        v = line.split("\t")
        yield {
            "frame": int(v[0]), "t": float(v[1]), "sport": int(v[2]), "dport": int(v[3]),
            "syn": v[4] in ("1", "True"), "fin": v[5] in ("1", "True"), "rst": v[6] in ("1", "True"),
            "len": int(v[7] or 0), "keepalive": bool(v[8]), "method": v[9] or None, "uri": v[10] or None,
        }


def per_connection(pcap: Path, server_port: int):
    conns: dict[int, dict] = {}
    for p in packets(pcap, server_port):
        from_client = p["dport"] == server_port
        cport = p["sport"] if from_client else p["dport"]
        c = conns.setdefault(cport, {"requests": [], "last_payload": None, "last_payload_dir": None,
                                     "first_close": None, "rst": [], "server_payload_after_close": False})
        payload = p["len"] > 0 and not p["keepalive"]
        if payload and c["first_close"] is not None and not from_client and c["first_close"][0] == "client":
            c["server_payload_after_close"] = True
        if payload and c["first_close"] is None:
            c["last_payload"] = p["t"]
            c["last_payload_dir"] = "client" if from_client else "server"
        if p["method"] and from_client:
            c["requests"].append((p["method"], p["uri"]))
        if (p["fin"] or p["rst"]) and c["first_close"] is None:
            c["first_close"] = ("client" if from_client else "server", "RST" if p["rst"] else "FIN", p["t"])
        if p["rst"]:
            c["rst"].append("client" if from_client else "server")
    return conns


def check(d: Path) -> bool:
    truth = json.loads((d / "truth.json").read_text())
    pcap = d / truth["capture"]
    port = truth["server"]["port"]
    seen = per_connection(pcap, port)
    ok = True
    print(f"== {d.name}: {truth['link_type']} {pcap.stat().st_size} bytes, {len(seen)} connections")
    if set(seen) != {c["client_port"] for c in truth["connections"]}:
        print(f"   MISMATCH ports: capture {sorted(seen)} truth {[c['client_port'] for c in truth['connections']]}")
        ok = False
    for c in truth["connections"]:
        s = seen.get(c["client_port"])
        if s is None:
            continue
        reqs = [(r["method"], r["uri"]) for r in c["requests"]]
        closer, kind, t_close = s["first_close"] or (None, None, None)
        idle = round(t_close - s["last_payload"], 6) if t_close and s["last_payload"] else None
        killed = closer == "client" and s["last_payload_dir"] == "client"
        problems = []
        if reqs != s["requests"]:
            problems.append(f"requests {s['requests']} != truth {reqs}")
        if closer != c["closer"] and not c.get("close_race"):
            problems.append(f"closer {closer} != truth {c['closer']}")
        if killed != c["killed"]:
            problems.append(f"killed {killed} != truth {c['killed']}")
        if c["killed"] and idle is not None and c["idle_before_close_s"] is not None \
                and abs(idle - c["idle_before_close_s"]) > 0.05:
            problems.append(f"idle {idle} vs truth {c['idle_before_close_s']}")
        if c["late_response_written"] and not (s["server_payload_after_close"] and "client" in s["rst"]):
            problems.append("expected server payload after client close answered by client RST")
        status = "ok" if not problems else "MISMATCH " + "; ".join(problems)
        if c.get("close_race"):
            status += " (Connection: close, FIN order is a race)"
        ok &= not problems
        print(f"   port {c['client_port']:>5}: {len(s['requests'])} req "
              f"[{' '.join(m + ' ' + u for m, u in s['requests'])}] first close {closer}/{kind} "
              f"idle {idle if idle is not None else '-'} s, killed={killed}, rst={s['rst'] or '-'} -> {status}")
    return ok


def main(argv) -> int:
    # the loopback scenarios (capture.pcap); the routed-path ones (client.pcap + server.pcap)
    # have their own checker, lab/paths/verify.py
    dirs = [Path(a) for a in argv if (Path(a) / "capture.pcap").exists()] or \
        sorted(p.parent for p in Path("captures/lab").glob("*/capture.pcap") if (p.parent / "truth.json").exists())
    results = [check(d) for d in dirs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
