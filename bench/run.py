#!/usr/bin/env python3
"""sockscope benchmark: whole-process wall time and peak RSS against tshark, NFStream, scapy, dpkt.

    .venv/bin/python bench/run.py [--packets 1000000] [--also 100000] [--repeat 1]
                                  [--tshark-engine] [--json results.json]

Generates (or reuses from bench/data/) a synthetic HTTP capture per size, runs every
command on the same file as a child process and reads its rusage with os.wait4, then
prints a markdown table and the ratios the project's targets are stated in.  Only ratios
measured within one run are meaningful on a shared machine; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
sys.path.insert(0, str(BENCH))
from gen_capture import GEN_VERSION  # noqa: E402

TSHARK_HTTP_FIELDS = ["-e", "http.request.method", "-e", "http.request.uri",
                      "-e", "http.response.code", "-e", "http.request_in"]

# Targets, all relative (see README): speed-ups over tshark and RSS flatness.
TARGET_CONV = 5.0
TARGET_HTTP = 15.0
TARGET_RSS_SPREAD = 0.20
TARGET_RSS_MB = 150.0          # summary, at both sizes (foundation issue)
TARGET_REQUESTS_MB = 200.0     # requests at the big size (HTTP issue)
TARGET_JOBS_CPU = 1.15         # -j 2 CPU time / -j 1: the parallel overhead (memory/speed issue)
TARGET_NFSTREAM = 4.0          # NFStream / summary --json wall, high-rate (busy) capture
NFSTREAM = "nfstream==6.6.0"   # in its own environment under bench/data/ (never the project's)
TARGET_DIAG_JSON = 2.0         # diagnose --json / summary --json wall, busy capture (diagnosis issue)
TARGET_DIAG_TEXT = 2.5         # diagnose (text report) / summary --json wall
TARGET_DIAG_MB = 300.0         # diagnose peak RSS, busy capture
TARGET_BUSY_CONV = 9.0         # tshark conv,tcp / summary --json, busy capture (memory issue)
TARGET_BUSY_HTTP = 25.0        # tshark -Y http fields / requests --json, busy capture (memory issue)


# ---- captures -------------------------------------------------------------------------
def capture_for(packets: int, seed: int, profile: str = "default", data: Path | None = None) -> tuple[Path, dict]:
    """Path and ground truth of the cached capture (in ``data``, default bench/data);
    generated on first use."""
    data = DATA if data is None else data
    data.mkdir(parents=True, exist_ok=True)
    stem = "http" if profile == "default" else profile
    pcap = data / f"{stem}_{packets}_s{seed}_v{GEN_VERSION}.pcap"
    meta = pcap.with_suffix(".json")
    if pcap.exists() and meta.exists():
        truth = json.loads(meta.read_text())
        if truth.get("file_bytes") == pcap.stat().st_size:
            truth["cached"] = True
            return pcap, truth
    print(f"generating {pcap.name} ...", file=sys.stderr, flush=True)
    tmp = pcap.with_suffix(".tmp")
    # A child process, so the generator's arrays never inflate this process.
    out = subprocess.run([sys.executable, str(BENCH / "gen_capture.py"), "--packets", str(packets),
                          "--seed", str(seed), "--profile", profile, "--out", str(tmp)],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    truth = json.loads(out)
    tmp.replace(pcap)
    meta.write_text(json.dumps(truth, indent=2) + "\n")
    truth["cached"] = False
    return pcap, truth


def two_process_scaling() -> dict:
    """This machine's ceiling for ``-j 2`` right now: a CPU-bound loop alone, then two copies
    at once; ``2 * alone / together`` is 2.0 on two free cores and less when the host's other
    tenants take cycles (seen 1.3-2.0 within minutes here)."""
    cmd = [sys.executable, "-c", "s = 0\nfor i in range(12_000_000):\n    s += i\n"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    alone = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd) for _ in range(2)]
    for p in procs:
        p.wait()
    together = time.perf_counter() - t0
    return {"alone_s": alone, "together_s": together, "scaling": 2 * alone / together}


def warm_cache(path: Path) -> None:
    # Read the file once so the first timed command does not pay for the disk.
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass


# ---- measuring one child ----------------------------------------------------------------
def measure(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` (stdout to /dev/null) and return wall seconds, peak RSS, exit status."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        except OSError as e:   # e.g. tshark missing: report the row, keep going
            return {"wall_s": 0.0, "rss_mb": 0.0, "cpu_s": 0.0, "exit": 127, "stderr_tail": [str(e)]}
        timer = threading.Timer(timeout, _kill, (proc.pid,))
        timer.start()
        try:
            # wait4 gives this child's own rusage; ru_maxrss is its peak RSS in KiB on Linux.
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)   # tell Popen it is reaped
        err.seek(0)
        tail = [ln for ln in err.read().decode(errors="replace").splitlines()
                if ln.strip() and "Running as user" not in ln]
    return {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
            "exit": proc.returncode, "stderr_tail": tail[-3:]}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def nfstream_python() -> tuple[str | None, str]:
    """The interpreter of NFStream's own environment (bench/data/nfstream-venv, made and
    filled with pip on first use), or None and why not."""
    venv = DATA / "nfstream-venv"
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import nfstream"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(py), ""
    print(f"setting up {NFSTREAM} in {venv} (once) ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        got = subprocess.run([str(py), "-m", "pip", "install", "-q", NFSTREAM], capture_output=True, text=True,
                             timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not make its environment: {e}"
    if got.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        tail = [ln for ln in (got.stderr or "").splitlines() if ln.strip()][-1:]
        return None, f"pip install {NFSTREAM} failed" + (f": {tail[0][:160]}" if tail else "")
    return str(py), ""


def _nfstream_row(f: str, a: argparse.Namespace) -> dict:
    row = {"key": "nfstream", "vs": "ss_summary", "reader": True, "slice": 0,
           "name": f"NFStream {NFSTREAM.split('==')[1]} (flows to pandas, no dissection)"}
    if a.nfstream_python:
        row["cmd"] = [a.nfstream_python, str(BENCH / "readers.py"), "nfstream", f]
    else:
        row["cmd"] = []
        row["unavailable"] = a.nfstream_why
    return row


# ---- the rows ---------------------------------------------------------------------------
def rows_for(pcap: Path, packets: int, a: argparse.Namespace) -> list[dict]:
    """Row definitions: name, command, which sockscope row it is compared with."""
    f = str(pcap)
    py = sys.executable
    ss = a.sockscope
    rows = [
        {"key": "ss_summary", "name": "sockscope summary --json", "cmd": [ss, "summary", "--json", f],
         "needs_sockscope": True},
        {"key": "ss_requests", "name": "sockscope requests --json", "cmd": [ss, "requests", "--json", f],
         "needs_sockscope": True},
        {"key": "ss_summary_j2", "name": "sockscope summary --json -j 2", "vs": "ss_summary",
         "cmd": [ss, "summary", "--json", "-j", "2", f], "needs_sockscope": True},
        {"key": "ss_requests_j2", "name": "sockscope requests --json -j 2", "vs": "ss_requests",
         "cmd": [ss, "requests", "--json", "-j", "2", f], "needs_sockscope": True},
    ]
    if a.tshark_engine:
        rows.append({"key": "ss_tshark_engine", "name": "sockscope summary --engine tshark --json",
                     "cmd": [ss, "summary", "--engine", "tshark", "--json", f],
                     "needs_sockscope": True, "vs": "ss_summary"})
    rows += [
        {"key": "tshark_conv", "name": "tshark -q -z conv,tcp", "vs": "ss_summary",
         "cmd": [a.tshark, "-r", f, "-q", "-z", "conv,tcp"]},
        {"key": "tshark_http", "name": "tshark -Y http -T fields (4 fields)", "vs": "ss_requests",
         "cmd": [a.tshark, "-r", f, "-Y", "http", "-T", "fields", *TSHARK_HTTP_FIELDS]},
    ]
    slice_n = min(a.scapy_slice, packets)
    rows.append({"key": "scapy", "vs": "ss_summary", "reader": True, "slice": slice_n,
                 "name": "scapy PcapReader" + (f" ({slice_n // 1000}k slice, extrapolated)"
                                               if slice_n < packets else ""),
                 "cmd": [py, str(BENCH / "readers.py"), "scapy", f, "--limit", str(slice_n)]})
    rows.append({"key": "dpkt", "vs": "ss_summary", "reader": True, "slice": 0,
                 "name": "dpkt Reader + Ethernet decode",
                 "cmd": [py, str(BENCH / "readers.py"), "dpkt", f]})
    rows.append(_nfstream_row(f, a))
    if a.only:
        rows = [r for r in rows if r["key"] in a.only]
    return rows


def busy_rows(pcap: Path, a: argparse.Namespace) -> list[dict]:
    """The diagnosis rows, on the high-connection-rate capture (findings by the hundred)."""
    f, ss = str(pcap), a.sockscope
    rows = [
        {"key": "ss_summary", "name": "sockscope summary --json", "cmd": [ss, "summary", "--json", f],
         "needs_sockscope": True},
        {"key": "ss_requests", "name": "sockscope requests --json", "cmd": [ss, "requests", "--json", f],
         "needs_sockscope": True, "vs": "ss_summary"},
        {"key": "ss_diagnose_json", "name": "sockscope diagnose --json", "cmd": [ss, "diagnose", "--json", f],
         "needs_sockscope": True, "vs": "ss_summary"},
        {"key": "ss_diagnose", "name": "sockscope diagnose (text report)", "cmd": [ss, "diagnose", f],
         "needs_sockscope": True, "vs": "ss_summary"},
        {"key": "ss_watch", "name": "sockscope watch --json (file)", "cmd": [ss, "watch", "--json", f],
         "needs_sockscope": True, "vs": "ss_summary"},
        {"key": "tshark_conv", "name": "tshark -q -z conv,tcp", "vs": "ss_summary",
         "cmd": [a.tshark, "-r", f, "-q", "-z", "conv,tcp"]},
        {"key": "tshark_http", "name": "tshark -Y http -T fields (4 fields)", "vs": "ss_requests",
         "cmd": [a.tshark, "-r", f, "-Y", "http", "-T", "fields", *TSHARK_HTTP_FIELDS]},
        _nfstream_row(f, a),
    ]
    return [r for r in rows if not a.only or r["key"] in a.only]


def slice_capture(pcap: Path, packets: int) -> Path:
    """The first ``packets`` records of a classic pcap, cached beside it: the busy capture's
    own beginning, so its memory compares with the whole file's on the same traffic."""
    out = pcap.with_name(f"{pcap.stem}_first{packets}.pcap")
    if out.exists() and out.stat().st_mtime >= pcap.stat().st_mtime:
        return out
    import struct

    with open(pcap, "rb") as src, open(out.with_suffix(".tmp"), "wb") as dst:
        dst.write(src.read(24))
        for _ in range(packets):
            head = src.read(16)
            if len(head) < 16:
                break
            dst.write(head + src.read(struct.unpack_from("<I", head, 8)[0]))
    out.with_suffix(".tmp").rename(out)
    return out


def busy_slice_key(packets: int) -> str:
    return f"busy-slice {packets}"


def run_row(row: dict, packets: int, timeout: float) -> dict:
    cmd = list(row["cmd"])
    result_file = None
    if row.get("reader"):
        fd, result_file = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        cmd += ["--result", result_file]
    m = measure(cmd, timeout)
    if result_file:
        try:
            rep = json.loads(Path(result_file).read_text() or "{}")
        except ValueError:
            rep = {}
        os.unlink(result_file)
        if m["exit"] == 0 and rep:
            m["reader"] = rep
            if row["slice"] and rep["packets"] < packets:
                # Extrapolate only the per-packet loop; start-up and imports happen once.
                m["measured_wall_s"] = m["wall_s"]
                m["wall_s"] = m["wall_s"] - rep["loop_s"] + rep["loop_s"] * packets / rep["packets"]
                m["extrapolated_from"] = rep["packets"]
    return m


def run_all(a: argparse.Namespace) -> dict:
    sizes = [a.packets] + ([a.also] if a.also and a.also != a.packets else [])
    sock_ok = Path(a.sockscope).is_file() and os.access(a.sockscope, os.X_OK)
    results: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "platform": platform.platform(), "loadavg_start": os.getloadavg()},
        "tshark": _tshark_version(a.tshark),
        "sockscope": a.sockscope if sock_ok else None,
        "repeat": a.repeat, "sizes": {},
    }
    a.nfstream_python, a.nfstream_why = (None, "--no-nfstream") if a.no_nfstream else nfstream_python()
    if a.nfstream_why:
        print(f"NFStream rows skipped: {a.nfstream_why}", file=sys.stderr)
    results["nfstream"] = NFSTREAM if a.nfstream_python else None
    plan = []
    for n in sizes:
        pcap, truth = capture_for(n, a.seed)
        results["sizes"][str(n)] = {"file": str(pcap), "truth": truth, "rows": {}}
        for row in rows_for(pcap, n, a):
            plan.append((str(n), pcap, row))
    if a.busy:
        pcap, truth = capture_for(a.busy, a.seed, "busy")
        key = busy_key(a.busy)
        results["sizes"][key] = {"file": str(pcap), "truth": truth, "rows": {}}
        for row in busy_rows(pcap, a):
            plan.append((key, pcap, row))
        if a.also and a.also < a.busy:
            cut = slice_capture(pcap, a.also)
            skey = busy_slice_key(a.also)
            results["sizes"][skey] = {"file": str(cut), "truth": {"packets": a.also}, "rows": {}}
            row = {"key": "ss_summary", "name": "sockscope summary --json",
                   "cmd": [a.sockscope, "summary", "--json", str(cut)], "needs_sockscope": True}
            if not a.only or "ss_summary" in a.only:
                plan.append((skey, cut, row))
    warmed = set()
    results["host"]["two_process_scaling"] = []
    for rnd in range(a.repeat):
        if any(row["key"].endswith("_j2") for _, _, row in plan):
            results["host"]["two_process_scaling"].append(two_process_scaling())
        # Alternate the order every round so slow drift of the machine's load does not
        # always penalise the same command.
        for n, pcap, row in (plan if rnd % 2 == 0 else plan[::-1]):
            slot = results["sizes"][n]["rows"].setdefault(
                row["key"], {"name": row["name"], "vs": row.get("vs"), "runs": []})
            if row.get("needs_sockscope") and not sock_ok:
                slot["unavailable"] = f"{a.sockscope} not installed"
                continue
            if row.get("unavailable"):
                slot["unavailable"] = row["unavailable"]
                continue
            if pcap not in warmed:
                warm_cache(pcap)
                warmed.add(pcap)
            print(f"[{rnd + 1}/{a.repeat}] {n} pkts: {row['name']} ...", file=sys.stderr, flush=True)
            m = run_row(row, int(n.split()[-1]), a.timeout)
            slot["runs"].append(m)
            if m["exit"] != 0:
                slot["unavailable"] = f"exit {m['exit']}: " + " | ".join(m["stderr_tail"])[-200:]
            print(f"    {m['wall_s']:.2f} s, {m['rss_mb']:.0f} MB, exit {m['exit']}", file=sys.stderr)
    # Best-of wall (least disturbed by neighbours), worst-case RSS.
    for size in results["sizes"].values():
        for slot in size["rows"].values():
            ok = [r for r in slot["runs"] if r["exit"] == 0]
            if ok and "unavailable" not in slot:
                slot["wall_s"] = min(r["wall_s"] for r in ok)
                slot["rss_mb"] = max(r["rss_mb"] for r in ok)
                slot["extrapolated"] = any("extrapolated_from" in r for r in ok)
    results["host"]["loadavg_end"] = os.getloadavg()
    results["ratios"] = ratios(results, a.packets, a.also, a.busy)
    return results


def busy_key(packets: int) -> str:
    return f"busy {packets}"


def _tshark_version(tshark: str) -> str | None:
    try:
        out = subprocess.run([tshark, "--version"], capture_output=True, text=True, timeout=60).stdout
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def _wall(results: dict, n: int, key: str) -> float | None:
    slot = results["sizes"].get(str(n), {}).get("rows", {}).get(key, {})
    return slot.get("wall_s")


def _rss(results: dict, n: int, key: str) -> float | None:
    slot = results["sizes"].get(str(n), {}).get("rows", {}).get(key, {})
    return slot.get("rss_mb")


def ratios(results: dict, big: int, small: int, busy: int = 0) -> list[dict]:
    out = []

    def speed(label: str, num: str, den: str, target: float | None, n: int | str, most: bool = False) -> None:
        a, b = _wall(results, n, num), _wall(results, n, den)
        v = a / b if a and b else None
        rows = results["sizes"].get(str(n), {}).get("rows", {})
        pairs = [x["wall_s"] / y["wall_s"] for x, y in zip(rows.get(num, {}).get("runs", []),
                                                          rows.get(den, {}).get("runs", []))
                 if x["exit"] == 0 and y["exit"] == 0 and y["wall_s"] > 0]
        if len(pairs) > 1:      # the two commands of one round ran close together: less noise
            label += " (run by run: " + ", ".join(f"{p:.2f}" for p in pairs) + ")"
        where = f"{n:,} pkts" if isinstance(n, int) else f"{int(n.split()[-1]):,}-pkt {n.split()[0]} capture"
        out.append({"what": f"{label} @ {where}", "value": v,
                    "target": (f"<= {target:g}" if most else f">= {target:g}") if target else "(informational)",
                    "ok": None if v is None or target is None else (v <= target if most else v >= target),
                    "unit": "x"})

    def cpu(label: str, num: str, den: str, target: float | None, n: int | str) -> None:
        rows = results["sizes"].get(str(n), {}).get("rows", {})
        ca = [r["cpu_s"] for r in rows.get(num, {}).get("runs", []) if r["exit"] == 0]
        cb = [r["cpu_s"] for r in rows.get(den, {}).get("runs", []) if r["exit"] == 0]
        v = min(ca) / min(cb) if ca and cb and min(cb) > 0 else None
        where = f"{n:,} pkts" if isinstance(n, int) else f"{int(n.split()[-1]):,}-pkt {n.split()[0]} capture"
        out.append({"what": f"{label} @ {where}", "value": v,
                    "target": f"<= {target:g}" if target else "(informational)",
                    "ok": None if v is None or target is None else v <= target, "unit": "x"})

    def memory(label: str, num: str, den: str, target: float, n: int | str) -> None:
        a, b = _rss(results, n, num), _rss(results, n, den)
        v = a / b if a and b else None
        where = f"{n:,} pkts" if isinstance(n, int) else f"{int(n.split()[-1]):,}-pkt {n.split()[0]} capture"
        out.append({"what": f"{label} @ {where}" + (f" ({a:.0f} / {b:.0f} MB)" if v else ""), "value": v,
                    "target": f"<= {target:g}", "ok": None if v is None else v <= target, "unit": "x"})

    # The targets are stated for the big capture; the small one shows how start-up weighs.
    for n in [big] + ([small] if small and small != big else []):
        t = (lambda x: x) if n == big else (lambda x: None)
        speed("tshark conv,tcp / sockscope summary", "tshark_conv", "ss_summary", t(TARGET_CONV), n)
        speed("tshark http fields / sockscope requests", "tshark_http", "ss_requests", t(TARGET_HTTP), n)
        # -j 2: the wall speed-up depends on what else this shared machine runs (its own
        # two-process scaling is measured below); the CPU time it costs over -j 1 does not
        speed("sockscope summary -j 1 / -j 2 (speed-up)", "ss_summary", "ss_summary_j2", None, n)
        speed("sockscope requests -j 1 / -j 2 (speed-up)", "ss_requests", "ss_requests_j2", None, n)
        cpu("sockscope summary CPU time -j 2 / -j 1 (parallel overhead)", "ss_summary_j2", "ss_summary",
            t(TARGET_JOBS_CPU), n)
        cpu("sockscope requests CPU time -j 2 / -j 1 (parallel overhead)", "ss_requests_j2", "ss_requests",
            t(TARGET_JOBS_CPU), n)
        speed("NFStream / sockscope summary", "nfstream", "ss_summary", None, n)
    def flatness(label: str, big_key: int | str, small_key: int | str) -> None:
        rb, rs = _rss(results, big_key, "ss_summary"), _rss(results, small_key, "ss_summary")
        v = rb / rs if rb and rs else None
        ok = None if v is None else abs(v - 1) <= TARGET_RSS_SPREAD and max(rb, rs) <= TARGET_RSS_MB
        out.append({"what": label + (f" ({rb:.0f} / {rs:.0f} MB)" if v else ""),
                    "value": v, "target": f"within {TARGET_RSS_SPREAD:.0%}, both <= {TARGET_RSS_MB:g} MB",
                    "ok": ok, "unit": "x"})

    if small and small != big:
        flatness(f"sockscope summary peak RSS {big:,} / {small:,} pkts", big, small)
    scal = results["host"].get("two_process_scaling") or []
    if scal:
        out.append({"what": "this machine: two CPU-bound processes at once vs one (the -j 2 ceiling; each round: "
                            + ", ".join(f"{x['scaling']:.2f}" for x in scal) + ")",
                    "value": statistics.median(x["scaling"] for x in scal), "target": "(informational)",
                    "ok": None, "unit": "x"})
    if busy:
        k = busy_key(busy)
        speed("sockscope diagnose --json / summary --json", "ss_diagnose_json", "ss_summary", TARGET_DIAG_JSON, k,
              most=True)
        speed("sockscope diagnose (text) / summary --json", "ss_diagnose", "ss_summary", TARGET_DIAG_TEXT, k,
              most=True)
        speed("sockscope watch --json (file) / summary --json", "ss_watch", "ss_summary", None, k)
        speed("tshark conv,tcp / sockscope summary", "tshark_conv", "ss_summary", TARGET_BUSY_CONV, k)
        speed("tshark http fields / sockscope requests", "tshark_http", "ss_requests", TARGET_BUSY_HTTP, k)
        speed("NFStream / sockscope summary", "nfstream", "ss_summary", TARGET_NFSTREAM, k)
        memory("sockscope summary peak RSS / NFStream's", "ss_summary", "nfstream", 1.0, k)
        seen = [x for x in (_rss(results, k, "ss_diagnose_json"), _rss(results, k, "ss_diagnose")) if x is not None]
        rd = max(seen) if seen else None
        out.append({"what": f"sockscope diagnose peak RSS @ {int(busy):,}-pkt busy capture (MB)", "value": rd,
                    "target": f"<= {TARGET_DIAG_MB:g} MB", "ok": None if rd is None else rd <= TARGET_DIAG_MB,
                    "unit": " MB"})
        rqb = _rss(results, k, "ss_requests")
        out.append({"what": f"sockscope requests peak RSS @ {int(busy):,}-pkt busy capture (MB)", "value": rqb,
                    "target": f"<= {TARGET_REQUESTS_MB:g} MB",
                    "ok": None if rqb is None else rqb <= TARGET_REQUESTS_MB, "unit": " MB"})
        if small and small < busy:
            flatness(f"sockscope summary peak RSS, busy capture / its first {small:,} pkts", k,
                     busy_slice_key(small))
    rq = _rss(results, big, "ss_requests")
    out.append({"what": f"sockscope requests peak RSS @ {big:,} pkts (MB)", "value": rq,
                "target": f"<= {TARGET_REQUESTS_MB:g} MB", "ok": None if rq is None else rq <= TARGET_REQUESTS_MB,
                "unit": " MB"})
    return out


# ---- optional correctness cross-check (not timed) ----------------------------------------
def verify(results: dict, sockscope: str) -> list[dict]:
    """Compare sockscope's JSON output with the generator's ground truth.

    A fast wrong answer is worthless, so ``--verify`` runs both commands once more, this time
    keeping their output.  Missing columns are skipped so schema growth never breaks it.
    """
    checks = []
    for n, size in results["sizes"].items():
        if not n.isdigit():
            continue        # the busy capture: its diagnosis is checked by the test suite
        truth, f = size["truth"], size["file"]
        cl = truth["closes"]

        def add(what: str, got, want) -> None:
            checks.append({"size": int(n), "what": what, "got": got, "want": want,
                           "ok": None if got is None else got == want})

        conns = _json_of([sockscope, "summary", "--json", f])
        if isinstance(conns, list):
            col = lambda k: sum(int(c.get(k) or 0) for c in conns) if conns and k in conns[0] else None  # noqa: E731
            kinds = [(c.get("closed_by"), c.get("close_kind")) for c in conns]
            add("connections", len(conns), truth["connections"])
            add("requests (sum over connections)", col("requests"), truth["requests"])
            add("unanswered requests", col("unanswered"), truth["unanswered_requests"])
            add("retransmits", col("retransmits"), truth["retransmissions"])
            add("closed by client FIN", kinds.count(("client", "FIN")), cl["client_fin"] + cl["incident"])
            add("closed by server FIN", kinds.count(("server", "FIN")), cl["server_idle"] + cl["conn_close"])
            add("closed by client RST", kinds.count(("client", "RST")), cl["client_rst"])
        else:
            add("summary --json output", None, "a JSON list")
        reqs = _json_of([sockscope, "requests", "--json", f])
        if isinstance(reqs, list):
            add("request rows", len(reqs), truth["requests"])
            add("requests without response", sum(r.get("outcome") == "no_response" for r in reqs),
                truth["unanswered_requests"])
        else:
            add("requests --json output", None, "a JSON list")
    return checks


def _json_of(cmd: list[str]):
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=3600).stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


# ---- report -----------------------------------------------------------------------------
def markdown(results: dict) -> str:
    lines = []
    for n, size in results["sizes"].items():
        t = size["truth"]
        title = f"{int(n):,}-packet capture" if n.isdigit() else \
            f"{int(n.split()[-1]):,}-packet {n.split()[0]} capture (profile {t.get('profile', n.split()[0])})"
        lines.append(f"### {title}: `{Path(size['file']).name}`\n")
        if "connections" not in t:      # a slice: only its size is known without reading it
            lines.append(f"the first {t['packets']:,} packets of the busy capture, "
                         f"{Path(size['file']).stat().st_size / 1e6:.0f} MB\n")
        else:
            lines.append(f"{t['packets']:,} packets, {t['file_bytes'] / 1e6:.0f} MB, {t['connections']:,} connections, "
                         f"{t['requests']:,} requests ({t['unanswered_requests']} unanswered), "
                         f"{t['retransmissions']} retransmissions, {t['duration_s']:.0f} s of traffic"
                         + ("" if t.get("cached") else f"; generated in {t['generate_s']:.1f} s") + "\n")
        lines.append("| command | packets | wall s | packets/s | peak RSS MB | vs sockscope |")
        lines.append("|---|---:|---:|---:|---:|---|")
        rows = size["rows"]
        for key, slot in rows.items():
            if "wall_s" not in slot:
                why = slot.get("unavailable", "not run")
                lines.append(f"| {slot['name']} | {t['packets']:,} | unavailable | | | {why} |")
                continue
            wall = slot["wall_s"]
            mark = "*" if slot.get("extrapolated") else ""
            vs = "—"
            base = rows.get(slot["vs"] or "", {}).get("wall_s")
            if base:
                vs = f"{wall / base:.1f}x {rows[slot['vs']]['name'].split(' --')[0].replace('sockscope ', '')}"
            lines.append(f"| {slot['name']} | {t['packets']:,} | {wall:.2f}{mark} | {t['packets'] / wall:,.0f}{mark} "
                         f"| {slot['rss_mb']:.0f} | {vs} |")
        if any(s.get("extrapolated") for s in rows.values()):
            lines.append("\n\\* extrapolated: measured on the slice, per-packet loop time scaled to the "
                         "full capture (import/start-up counted once); RSS is the slice's.")
        lines.append("")
    lines.append("### Ratios (same run, same file)\n")
    lines.append("| ratio | value | target | |")
    lines.append("|---|---:|---|---|")
    for r in results["ratios"]:
        v = "unavailable" if r["value"] is None else f"{r['value']:.2f}{r['unit']}"
        ok = "n/a" if r["ok"] is None else ("met" if r["ok"] else "MISSED")
        lines.append(f"| {r['what']} | {v} | {r['target']} | {ok} |")
    if results.get("verify"):
        lines.append("\n### sockscope output vs ground truth (`--verify`, not timed)\n")
        lines.append("| capture | check | sockscope | truth | |")
        lines.append("|---:|---|---:|---:|---|")
        for c in results["verify"]:
            ok = "unavailable" if c["ok"] is None else ("ok" if c["ok"] else "WRONG")
            lines.append(f"| {c['size']:,} | {c['what']} | {c['got']} | {c['want']} | {ok} |")
    h = results["host"]
    lines.append(f"\n{h['cpus']} CPUs, load average {h['loadavg_start'][0]:.2f} at start, "
                 f"{h['loadavg_end'][0]:.2f} at end; {(results['tshark'] or 'tshark ?').rstrip('.')}; best of {results['repeat']} run(s).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="main capture size (default 1M)")
    ap.add_argument("--also", type=int, default=100_000,
                    help="second, smaller capture for the RSS-flatness check (0 to skip)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per command; best wall, worst RSS kept")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--busy", type=int, default=1_000_000,
                    help="packets of the high-connection-rate capture for the diagnose rows (0 to skip)")
    ap.add_argument("--tshark-engine", action="store_true", help="also time sockscope --engine tshark")
    ap.add_argument("--no-nfstream", action="store_true",
                    help=f"skip the NFStream rows (else {NFSTREAM} is installed once into bench/data/nfstream-venv)")
    ap.add_argument("--verify", action="store_true",
                    help="afterwards, check sockscope's JSON against the ground truth (untimed)")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON to FILE")
    ap.add_argument("--sockscope", default=str(REPO / ".venv" / "bin" / "sockscope"))
    ap.add_argument("--tshark", default=shutil.which("tshark") or "/usr/bin/tshark")
    ap.add_argument("--scapy-slice", type=int, default=100_000, help="packets scapy reads before extrapolating")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a command is killed")
    ap.add_argument("--only", type=lambda s: s.split(","), default=None,
                    help="comma-separated row keys: ss_summary,ss_requests,ss_requests_j2,ss_tshark_engine,"
                         "tshark_conv,tshark_http,scapy,dpkt,nfstream,ss_diagnose_json,ss_diagnose,ss_watch")
    a = ap.parse_args(argv)
    if a.repeat < 1 or a.packets < 1:
        ap.error("--repeat and --packets must be positive")
    results = run_all(a)
    if a.verify:
        if results["sockscope"]:
            print("verifying sockscope output against the ground truth ...", file=sys.stderr)
            results["verify"] = verify(results, a.sockscope)
        else:
            results["verify"] = []
    print(markdown(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
