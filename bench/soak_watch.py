#!/usr/bin/env python3
"""Soak test for ``sockscope watch``: an endless pcap stream, its RSS sampled, every finding counted.

    .venv/bin/python bench/soak_watch.py [--seconds 600] [--rate 20000] [--packets N] [--loops N]
                                         [--capture-packets 300000] [--out bench/data/soak/summary.json]

``watch`` is meant to run for days on ``tcpdump -U -w - | sockscope watch -``. A file-sized test
cannot show that its memory stays flat or that it keeps up, so this one feeds it a stream that
does not end: one capture made by ``bench/gen_capture.py --profile busy`` (cached in
``bench/data/``; ~2,100 new connections per second, ending by FIN, ``Connection: close``, RST,
aborts with a request in flight, 5 s client timeouts and server idle closes) replayed in loops
into ``sockscope watch --json -`` through a pipe, paced to ``--rate`` packets per second, until
``--seconds`` or ``--packets`` (or ``--loops``) is reached. The pcap file header is written
once; then, per loop *k*, every packet record of the capture with

* its timestamp moved ``k x period`` seconds later, the period being the capture's span
  rounded up plus ``--gap`` (10 s) of silence: capture time only ever increases, and between
  two loops lies more than watch's 5 s linger;
* its client port moved by ``k`` within the ephemeral range [32768, 61000) (a translation,
  so no two connections of one loop share a 4-tuple; on the default capture no 4-tuple of a
  loop comes back in the next 119), with the TCP checksum adjusted incrementally (RFC 1624):
  the stream stays well-formed although sockscope does not check checksums. Addresses are
  left alone: the same 4,096 clients keep coming back, as a client pool does, and the
  engine's address-to-text cache (capped at 65,536) is not being filled during the
  measurement.

Truth. The expected findings come from ``sockscope diagnose --json`` on the capture of one loop
(loop 0 is that file byte for byte): the analysis' own definition, per connection and kind,
which ``watch`` is tested to reproduce (tests/test_watch.py). The generator's own ground truth
has close kinds, not findings; its tally (incident -> client_idle_timeout, client_abort ->
client_abort, server_idle -> server_idle_close) is reported next to diagnose's as a cross-check
but is not the reference, because it names three kinds and diagnose names every kind, each on a
connection id. ``watch`` numbers connections across the stream in order of their first packet,
so loop *k*'s connection *c* is ``k x C + c`` (C = connections of one loop): with K loops written,
watch's findings, with its revisions applied (what it ends up saying of each connection), must be
exactly diagnose's set K times over, connection by connection, not only in the totals.
``root_cause_hint`` (a finding about groups of connections) is left out: ``watch`` reports per
connection. The premise that loops do not influence each other (the only cross-connection input
of the per-connection detectors is timer inference over every close seen so far) is checked
before the soak: ``--check-loops`` (2) loops are written to a file and ``diagnose`` on it must
give the one-loop set twice, shifted by C.

Connections still open at the end of a loop. The tracker holds a connection until both sides
have closed (or one reset) and it has lingered 5 s; one that never closes is let go only when
more than ``max_open`` (100,000) are held, quiet ones then being ended "as if the capture had
ended". Every connection the generator writes closes, so at each loop boundary nothing is held:
the summary reports the count of the loop's connections the sweep cannot retire (0), and the
first packet of loop k+1 comes after the gap, so loop k's connections are all retired (and their
findings given) before loop k+1's are. ``--hold-open F`` drops the FIN and RST packets of a
fraction F of each loop's connections to measure the other case (held connections pile up to
max_open); the exact comparison is then against diagnose on that modified loop.

Memory. The watch process's VmRSS (``/proc/PID/status``) is sampled every ``--sample-s`` (1 s).
Warm-up is the first ``--warmup-frac`` (20 %) of the streaming time, and at least the first
loop: the first batches import pandas and pyarrow and size the allocator's arenas, and a loop
is when every batch size of the capture has been seen once. After warm-up the RSS is flat if
(max - min) / min <= ``--rss-tolerance`` (10 %): a bound on growth and on oscillation both,
stricter than max <= 1.10 x the first post-warm-up sample. A least-squares slope (MiB/min) is
reported too, for growth too slow to break the bound in ten minutes. At each loop's end the
watch process's CPU time and RSS are logged as well: a cost per loop that rises with uptime is
the other way a long-running watch fails (it falls behind, and tcpdump drops packets).

Exit 1 if a check fails: findings lost or extra, RSS not flat, watch's exit code non-zero (or
watch killed by this script's watchdog), fewer packets than ``--min-packets`` when the run was
not capped by ``--packets``/``--loops``, or loops found to influence each other. The summary is
written as JSON to ``--out`` and shortly on stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Iterator

import numpy as np

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
sys.path.insert(0, str(BENCH))
from run import capture_for  # noqa: E402  (bench/run.py's capture cache, shared)

LINGER_S = 5.0                  # watch's linger (engine.stream's default; watch has no option for it)
EPHEMERAL_LO, EPHEMERAL_N = 32768, 61000 - 32768    # Linux's ephemeral port range
FIN, RST = 0x01, 0x04
# Offsets in a record of gen_capture's layout: 16-byte pcap record header (its timestamp's
# seconds at 0), Ethernet II, IPv4 without options, TCP.
ETH_TYPE, IP_VHL, IP_PROTO, SPORT, DPORT, TCP_FLAGS, TCP_SUM = 28, 30, 39, 50, 52, 63, 66
GEN_KIND = {"incident": "client_idle_timeout", "client_abort": "client_abort", "server_idle": "server_idle_close"}


# ---- the capture one loop replays ---------------------------------------------------------
def loop_capture(data: Path, packets: int, seed: int, profile: str = "busy") -> tuple[Path, dict]:
    """The generated capture and its ground truth, cached under ``data`` by bench/run.py's
    own cache (generated in a child, so its arrays never sit in this process for the hours
    of a soak)."""
    return capture_for(packets, seed, profile, data)


def _put_be16(buf: np.ndarray, pos: np.ndarray, v: np.ndarray) -> None:
    buf[pos] = v >> 8
    buf[pos + 1] = v & 0xFF


def _get_be16(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (buf[pos].astype(np.int64) << 8) | buf[pos + 1]


def _fold16(s: np.ndarray) -> np.ndarray:
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


def csum_adjust(csum: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """A ones'-complement checksum after one 16-bit word it covers went from ``old`` to
    ``new`` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'))."""
    return ~_fold16((~csum & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF


class LoopStream:
    """A classic pcap of gen_capture's layout, replayable as loop 0, 1, 2, ... of one stream."""

    def __init__(self, path: Path, gap_s: float = 10.0, hold_open: float = 0.0) -> None:
        raw = np.fromfile(path, dtype=np.uint8)
        self.header = raw[:24].tobytes()
        magic, linktype = int(raw[:4].view("<u4")[0]), int(raw[20:24].view("<u4")[0])
        if magic != 0xA1B2C3D4 or linktype != 1:
            raise SystemExit(f"{path}: expected a little-endian microsecond Ethernet pcap (gen_capture.py's)")
        buf = raw[24:]
        # Records have varying sizes: walk their headers once (struct on bytes is the quick way).
        data, offs, pos = buf.tobytes(), array("q"), 0
        unpack = struct.Struct("<I").unpack_from
        while pos + 16 <= len(data):
            offs.append(pos)
            pos += 16 + unpack(data, pos + 8)[0]
        del data
        if pos != len(buf):
            raise SystemExit(f"{path}: the last record is cut off")
        off = np.frombuffer(offs, dtype=np.int64).copy()
        self._check_layout(buf, off, path)
        if hold_open > 0:
            buf, off = self._drop_closes(buf, off, hold_open)
        self.buf, self.off = buf, off
        self.end = np.append(off, len(buf))          # records i..j-1 are buf[off[i]:end[j]]
        self.packets = len(off)
        sec = buf[off[:, None] + np.arange(4)].astype(np.int64)
        self.sec = sec[:, 0] | sec[:, 1] << 8 | sec[:, 2] << 16 | sec[:, 3] << 24
        usec = buf[off[:, None] + np.arange(4, 8)].astype(np.int64)
        usec = usec[:, 0] | usec[:, 1] << 8 | usec[:, 2] << 16 | usec[:, 3] << 24
        t = self.sec * 1_000_000 + usec
        self.first_us, self.last_us = int(t[0]), int(t[-1])
        if np.any(np.diff(t) < 0):
            raise SystemExit(f"{path}: timestamps go backwards; a loop would not follow the one before")
        # Whole seconds, so a loop's shift never carries into the microseconds field.
        self.period_s = math.ceil((self.last_us - self.first_us) / 1e6 + gap_s)
        sp, dp = _get_be16(buf, off + SPORT), _get_be16(buf, off + DPORT)
        eph = lambda p: (p >= EPHEMERAL_LO) & (p < EPHEMERAL_LO + EPHEMERAL_N)  # noqa: E731
        client_is_src = eph(sp)
        if np.any(client_is_src == eph(dp)):
            raise SystemExit(f"{path}: a packet with no (or two) ephemeral ports: cannot tell the client's")
        self.cport_pos = off + np.where(client_is_src, SPORT, DPORT)
        self.cport = np.where(client_is_src, sp, dp)
        self.tcp_sum = _get_be16(buf, off + TCP_SUM)

    @staticmethod
    def _check_layout(buf: np.ndarray, off: np.ndarray, path: Path) -> None:
        ok = ((_get_be16(buf, off + ETH_TYPE) == 0x0800) & (buf[off + IP_VHL] == 0x45) & (buf[off + IP_PROTO] == 6))
        if not ok.all():
            raise SystemExit(f"{path}: {int((~ok).sum())} record(s) not Ethernet/IPv4 (no options)/TCP")

    @staticmethod
    def _drop_closes(buf: np.ndarray, off: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """The records without the FIN/RST packets of ``fraction`` of the connections (chosen
        by a hash of the client's address and port): those connections never close."""
        sp, dp = _get_be16(buf, off + SPORT), _get_be16(buf, off + DPORT)
        src = buf[off[:, None] + np.arange(42, 46)].astype(np.int64) @ (1 << np.arange(24, -1, -8))
        dst = buf[off[:, None] + np.arange(46, 50)].astype(np.int64) @ (1 << np.arange(24, -1, -8))
        client_is_src = sp >= EPHEMERAL_LO
        key = np.where(client_is_src, src, dst) << 16 | np.where(client_is_src, sp, dp)
        held = ((key.astype(np.uint64) * np.uint64(2654435761)) >> np.uint64(11)) % np.uint64(10_000) \
            < fraction * 10_000
        drop = held & ((buf[off + TCP_FLAGS] & (FIN | RST)) != 0)
        lens = np.diff(np.append(off, len(buf)))
        keep_bytes = np.repeat(~drop, lens)
        kept_lens = lens[~drop]
        return buf[keep_bytes], np.concatenate([[0], np.cumsum(kept_lens)[:-1]]).astype(np.int64)

    def write_file(self, path: Path, loops: int) -> None:
        """``loops`` loops as one capture file (loop 0 alone is the source capture)."""
        with open(path, "wb") as f:
            f.write(self.header)
            for k in range(loops):
                for piece in self.chunks(k, 65536):
                    f.write(piece)

    def chunks(self, k: int, per_chunk: int) -> Iterator[memoryview]:
        """Loop ``k``'s records, ``per_chunk`` at a time, as bytes ready to write."""
        port_shift = k % EPHEMERAL_N
        sec_shift = k * self.period_s
        for i in range(0, self.packets, per_chunk):
            j = min(self.packets, i + per_chunk)
            a, b = int(self.off[i]), int(self.end[j])
            piece = self.buf[a:b].copy()
            if k:
                rel = self.off[i:j] - a
                sec = self.sec[i:j] + sec_shift
                for byte in range(4):
                    piece[rel + byte] = (sec >> (8 * byte)) & 0xFF
                old = self.cport[i:j]
                new = EPHEMERAL_LO + (old - EPHEMERAL_LO + port_shift) % EPHEMERAL_N
                _put_be16(piece, self.cport_pos[i:j] - a, new)
                _put_be16(piece, rel + TCP_SUM, csum_adjust(self.tcp_sum[i:j], old, new))
            yield memoryview(piece)


# ---- truth ------------------------------------------------------------------------------------
def _sockscope() -> list[str]:
    exe = Path(sys.executable).with_name("sockscope")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sockscope"]


def _json_of(*args: str) -> Any:
    p = subprocess.run([*_sockscope(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit(f"sockscope {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def loop_truth(path: Path) -> dict:
    """Per-connection findings (conn_id, kind) diagnose gives the one-loop capture, its
    connection count, and how many of its connections the tracker's sweep cannot retire."""
    found = _json_of("diagnose", "--json", str(path))
    conns = _json_of("summary", "--json", str(path))
    # The sweep retires a connection once both sides closed or one reset (and it lingered).
    held = sum(1 for c in conns if not ((c["client_fin_ts"] and c["server_fin_ts"])
                                        or c["client_rst_ts"] or c["server_rst_ts"]))
    pairs = sorted({(int(f["conn_id"]), f["kind"]) for f in found if f["conn_id"] is not None})
    return {"connections": len(conns), "held_open_connections": held, "findings": pairs,
            "by_kind": dict(collections.Counter(k for _, k in pairs)),
            "group_findings": dict(collections.Counter(f["kind"] for f in found if f["conn_id"] is None))}


def check_loops(stream: LoopStream, truth: dict, loops: int, path: Path) -> dict:
    """Write ``loops`` loops into one file and diagnose it: each loop's findings must be the
    one-loop set, on ids shifted by C (loops independent of each other)."""
    stream.write_file(path, loops)
    try:
        found = _json_of("diagnose", "--json", str(path))
    finally:
        path.unlink(missing_ok=True)
    watched = {}
    for f in found:
        if f["conn_id"] is not None:
            watched.setdefault(int(f["conn_id"]), {})[f["kind"]] = None
    cmp = compare(set(map(tuple, truth["findings"])), truth["connections"], loops, watched)
    return {"loops": loops, "ok": cmp["lost"] == 0 and cmp["extra"] == 0, **cmp}


def compare(truth: set[tuple[int, str]], conns_per_loop: int, loops: int,
            seen: dict[int, dict[str, None]]) -> dict:
    """Per loop, the findings seen against the one-loop truth, connection by connection.

    ``seen`` maps a stream-wide conn_id to the kinds reported of it; loop k's connection c
    is k x ``conns_per_loop`` + c."""
    per_loop: dict[int, set[tuple[int, str]]] = collections.defaultdict(set)
    for cid, kinds in seen.items():
        loop, local = divmod(cid, conns_per_loop)
        per_loop[loop].update((local, k) for k in kinds)
    lost, extra = [], []
    for loop in sorted(set(range(loops)) | set(per_loop)):
        got = per_loop.get(loop, set())
        want = truth if loop < loops else set()
        lost += [(loop, loop * conns_per_loop + c, k) for c, k in sorted(want - got)]
        extra += [(loop, loop * conns_per_loop + c, k) for c, k in sorted(got - want)]
    expected = collections.Counter(k for _, k in truth)
    return {"expected_by_kind": {k: n * loops for k, n in sorted(expected.items())},
            "seen_by_kind": dict(sorted(collections.Counter(k for ks in seen.values() for k in ks).items())),
            "lost": len(lost), "extra": len(extra),
            "lost_examples": [{"loop": a, "conn_id": b, "kind": c} for a, b, c in lost[:10]],
            "extra_examples": [{"loop": a, "conn_id": b, "kind": c} for a, b, c in extra[:10]]}


# ---- the watch process --------------------------------------------------------------------------
class Events:
    """Reads watch's JSON lines as they come: what it ends up saying of each connection."""

    def __init__(self, stdout) -> None:
        self.kinds: dict[int, dict[str, None]] = {}     # conn_id -> kinds, revisions applied
        self.raw = collections.Counter()                # finding events by kind, as first said
        self.closes = collections.Counter()
        self.revisions = collections.Counter()
        self.unattributed = 0                           # finding events without a conn_id
        self.bad_lines: list[str] = []
        self.lines = 0
        self.thread = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self.thread.start()

    def _read(self, stdout) -> None:
        for line in stdout:
            self.lines += 1
            try:
                ev = json.loads(line)
            except ValueError:
                if len(self.bad_lines) < 5:
                    self.bad_lines.append(line[:200].decode(errors="replace"))
                continue
            what = ev.get("event")
            if what == "finding":
                self.raw[ev["kind"]] += 1
                if ev.get("conn_id") is None:
                    self.unattributed += 1
                else:
                    self.kinds.setdefault(int(ev["conn_id"]), {})[ev["kind"]] = None
            elif what == "revision":
                self.revisions[f"{ev['was']} -> {ev['kind']}"] += 1
                k = self.kinds.setdefault(int(ev["conn_id"]), {})
                k.pop(ev["was"], None)
                k[ev["kind"]] = None
            elif what == "close":
                self.closes[ev.get("kind")] += 1


class Tail:
    """The last lines of a stream, read on a thread (watch must never block on stderr)."""

    def __init__(self, stream, keep: int = 20) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.decode(errors="replace").rstrip())


_TICK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> tuple[int | None, float | None, int | None]:
    """(VmRSS in KiB, user+system CPU seconds, VmHWM = peak RSS so far in KiB) of a live
    process; None once it is gone."""
    rss = cpu = hwm = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICK      # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        pass
    return rss, cpu, hwm


class Sampler:
    """VmRSS and CPU of the watch process every ``every`` seconds; also the watchdog that kills
    it past ``deadline`` (a watch that stops reading must not hang the soak)."""

    def __init__(self, pid: int, t0: float, every: float, deadline: float) -> None:
        self.pid, self.t0, self.every, self.deadline = pid, t0, every, deadline
        self.samples: list[dict] = []
        self.phase = "stream"
        self.killed = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            rss, cpu, hwm = proc_sample(self.pid)
            if rss is not None:
                self.samples.append({"t": round(now - self.t0, 3), "rss_kib": rss, "hwm_kib": hwm, "cpu_s": cpu,
                                     "phase": self.phase})
            if now > self.deadline and not self.killed:
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.stop.wait(self.every)


def write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def start_watch() -> tuple[subprocess.Popen, int | None]:
    """``sockscope watch --json -``, started while this process is still small.

    The kernel folds the parent's peak RSS into a vfork()ed child's ru_maxrss when the child
    execs, so a watch started after the loop was loaded (a few hundred MiB of numpy arrays
    here) would report this script's peak as its own. Started first, its wait4 peak is its
    own (or this script's few tens of MiB at that moment, returned for the record)."""
    own, _, _ = proc_sample(os.getpid())
    proc = subprocess.Popen([*_sockscope(), "watch", "--json", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    return proc, own


def soak(proc: subprocess.Popen, stream: LoopStream, a: argparse.Namespace) -> dict:
    """Run the looped stream into the watch process; the raw figures of the run."""
    per_chunk = max(256, a.rate // 50) if a.rate > 0 else 4096     # ~20 ms of stream per write
    max_loops = a.loops if a.loops else (a.packets // stream.packets if a.packets else None)
    t0 = time.monotonic()
    # The watchdog's deadline: the writing cap plus two loops at the target rate, plus the drain.
    loop_s = stream.packets / a.rate if a.rate > 0 else 60.0
    deadline = t0 + a.seconds + 2 * loop_s + a.drain_timeout
    events, err = Events(proc.stdout), Tail(proc.stderr)
    sampler = Sampler(proc.pid, t0, a.sample_s, deadline)
    fd = proc.stdin.fileno()
    written = loops = 0
    loop_log: list[dict] = []
    broken = None
    stop_reason = "seconds"
    t_start = time.monotonic()
    last_loop_s = 0.0
    try:
        write_all(fd, memoryview(stream.header))
        while True:
            if max_loops is not None and loops >= max_loops:
                stop_reason = "loops" if a.loops else "packets"
                break
            elapsed = time.monotonic() - t_start
            # Stop at a loop boundary: start a loop only if it can end within --seconds
            # (at the target rate, or as fast as the last loop went if that was slower).
            expected = max(stream.packets / a.rate if a.rate > 0 else 0.0, last_loop_s)
            if loops and elapsed + expected > a.seconds:
                stop_reason = "seconds"
                break
            ls = time.monotonic()
            done = 0
            for piece in stream.chunks(loops, per_chunk):
                write_all(fd, piece)
                done += min(per_chunk, stream.packets - done)
                if a.rate > 0:
                    ahead = t_start + (written + done) / a.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            written += done
            loops += 1
            last_loop_s = time.monotonic() - ls
            rss, cpu, _ = proc_sample(proc.pid)
            loop_log.append({"loop": loops - 1, "end_t": round(time.monotonic() - t0, 3),
                             "wall_s": round(last_loop_s, 3), "rss_kib": rss, "watch_cpu_s": cpu})
            if a.progress:
                print(f"loop {loops}: {written:,} packets, {time.monotonic() - t_start:.0f} s, "
                      f"watch RSS {(rss or 0) / 1024:.0f} MiB, CPU {cpu or 0:.1f} s, "
                      f"findings so far {sum(events.raw.values()):,}", file=sys.stderr, flush=True)
    except BrokenPipeError as e:
        broken = f"watch stopped reading: {e}"
    stream_s = time.monotonic() - t_start
    sampler.phase = "drain"
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    # Reap with wait4: its rusage is the watch process's own CPU time and peak RSS.
    status = usage = None
    drain_until = time.monotonic() + a.drain_timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > drain_until and not sampler.killed:
            sampler.killed = True
            os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    sampler.stop.set()
    sampler.thread.join()
    events.thread.join(timeout=30)
    err.thread.join(timeout=30)
    return {"packets_written": written, "loops": loops, "stream_s": stream_s, "wall_s": wall,
            "stop_reason": stop_reason, "broken_pipe": broken, "exit_code": proc.returncode,
            "killed_by_watchdog": sampler.killed, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_kib": usage.ru_maxrss, "samples": sampler.samples, "loop_log": loop_log,
            "events": events, "stderr_tail": list(err.lines)}


def rss_stats(samples: list[dict], warmup_s: float, tolerance: float) -> dict:
    """Flatness of the streaming-phase RSS after warm-up."""
    after = [s for s in samples if s["phase"] == "stream" and s["t"] >= warmup_s]
    if len(after) < 2:
        return {"warmup_s": round(warmup_s, 1), "samples": len(after), "flat": False,
                "why": "fewer than two samples after warm-up (run too short)"}
    mib = np.array([s["rss_kib"] for s in after], dtype=np.float64) / 1024
    t = np.array([s["t"] for s in after], dtype=np.float64)
    lo, hi = float(mib.min()), float(mib.max())
    slope = float(np.polyfit(t / 60, mib, 1)[0]) if np.ptp(t) > 0 else 0.0
    return {"warmup_s": round(warmup_s, 1), "samples": len(after), "first_mib": round(float(mib[0]), 1),
            "min_mib": round(lo, 1), "median_mib": round(float(np.median(mib)), 1), "max_mib": round(hi, 1),
            "spread": round((hi - lo) / lo, 4), "max_over_first": round(hi / float(mib[0]), 4),
            "slope_mib_per_min": round(slope, 3), "tolerance": tolerance, "flat": (hi - lo) / lo <= tolerance}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="write for at most this long (stops at a loop boundary)")
    ap.add_argument("--rate", type=int, default=20_000, help="packets per second written; 0: as fast as watch reads")
    ap.add_argument("--packets", type=int, default=0, help="write at most this many packets (whole loops)")
    ap.add_argument("--loops", type=int, default=0, help="write this many loops (overrides --packets; --seconds still caps)")
    ap.add_argument("--min-packets", type=int, default=10_000_000,
                    help="fail if fewer were written (unless capped by --packets/--loops)")
    ap.add_argument("--capture-packets", type=int, default=300_000, help="packets of the capture one loop replays")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gap", type=float, default=10.0, help="seconds of capture time between loops (> 5 s linger)")
    ap.add_argument("--hold-open", type=float, default=0.0,
                    help="fraction of each loop's connections whose FIN/RST packets are dropped (never closed)")
    ap.add_argument("--check-loops", type=int, default=2, help="loops diagnosed as one file first (0: skip)")
    ap.add_argument("--sample-s", type=float, default=1.0, help="RSS sampling interval")
    ap.add_argument("--warmup-frac", type=float, default=0.2)
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--drain-timeout", type=float, default=300.0, help="seconds watch may take to finish after EOF")
    ap.add_argument("--data", type=Path, default=DATA, help="where the capture is cached")
    ap.add_argument("--out", type=Path, default=None, help="JSON summary (default DATA/soak/summary.json)")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="a line per loop on stderr")
    a = ap.parse_args(argv)
    if a.gap <= LINGER_S:
        ap.error(f"--gap must exceed watch's {LINGER_S:g} s linger, or loops overlap in the tracker")
    if not 0 <= a.hold_open <= 1:
        ap.error("--hold-open is a fraction in [0, 1]")
    out = a.out or a.data / "soak" / "summary.json"
    work = out.parent
    work.mkdir(parents=True, exist_ok=True)

    proc, own_kib = start_watch()      # it waits on its stdin while the truth is computed
    try:
        pcap, gen_truth = loop_capture(a.data, a.capture_packets, a.seed)
        stream = LoopStream(pcap, a.gap, a.hold_open)
        if a.packets and not a.loops and a.packets < stream.packets:
            raise SystemExit(f"--packets {a.packets:,} is less than one loop ({stream.packets:,} packets)")
        loop_file = pcap
        if a.hold_open:
            loop_file = work / f"loop_hold{a.hold_open:g}.pcap"
            stream.write_file(loop_file, 1)
        truth = loop_truth(loop_file)
        if a.hold_open:
            loop_file.unlink()
        indep = check_loops(stream, truth, a.check_loops, work / "check_loops.pcap") if a.check_loops > 1 else None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    gen_kinds = {GEN_KIND[k]: n for k, n in gen_truth["closes"].items() if k in GEN_KIND and n}
    gen_agrees = None if a.hold_open else all(truth["by_kind"].get(k, 0) == n for k, n in gen_kinds.items())

    r = soak(proc, stream, a)
    ev: Events = r.pop("events")
    cmp = compare(set(map(tuple, truth["findings"])), truth["connections"], r["loops"], ev.kinds)
    first_loop_end = r["loop_log"][0]["end_t"] if r["loop_log"] else 0.0
    samples = r.pop("samples")
    # Sample times count from watch's start, a few ms before the stream's first byte.
    rss = rss_stats(samples, max(a.warmup_frac * r["stream_s"], first_loop_end), a.rss_tolerance)
    capped = bool(a.loops or a.packets)
    cpu_per_loop = [b["watch_cpu_s"] - a_["watch_cpu_s"] for a_, b in zip(r["loop_log"], r["loop_log"][1:])
                    if a_["watch_cpu_s"] is not None and b["watch_cpu_s"] is not None]
    checks = {
        "findings_exact": cmp["lost"] == 0 and cmp["extra"] == 0 and ev.unattributed == 0 and not ev.bad_lines,
        "rss_flat": bool(rss["flat"]),
        "watch_exit_zero": r["exit_code"] == 0 and not r["killed_by_watchdog"] and r["broken_pipe"] is None,
        "min_packets": capped or r["packets_written"] >= a.min_packets,
    }
    if indep is not None:
        checks["loops_independent"] = indep["ok"]
    summary = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "capture": {"file": str(pcap), "packets": stream.packets, "connections": truth["connections"],
                    "span_s": round((stream.last_us - stream.first_us) / 1e6, 3), "period_s": stream.period_s,
                    "held_open_connections": truth["held_open_connections"],
                    "findings_per_loop": truth["by_kind"], "group_findings_per_loop": truth["group_findings"],
                    "generator_truth_kinds": gen_kinds, "generator_agrees_with_diagnose": gen_agrees},
        "loops_independent": indep,
        "packets_written": r["packets_written"], "loops": r["loops"], "stop_reason": r["stop_reason"],
        "stream_s": round(r["stream_s"], 2), "wall_s": round(r["wall_s"], 2),
        "packets_per_s": round(r["packets_written"] / r["stream_s"], 1) if r["stream_s"] > 0 else None,
        "findings": {**cmp, "raw_by_kind": dict(sorted(ev.raw.items())), "unattributed": ev.unattributed,
                     "bad_lines": ev.bad_lines, "lines": ev.lines},
        "revisions": sum(ev.revisions.values()), "revisions_by_change": dict(ev.revisions),
        "closes_by_kind": dict(sorted((str(k), n) for k, n in ev.closes.items())),
        "rss": rss, "peak_rss_mib": round(r["peak_rss_kib"] / 1024, 1),
        "soak_script_rss_at_watch_start_mib": round(own_kib / 1024, 1) if own_kib else None,
        # The peak while streaming (VmHWM at the last sample before EOF); peak_rss_mib (wait4)
        # also covers the drain after EOF, when the last loop's connections retire.
        "peak_rss_streaming_mib": max((round(s["hwm_kib"] / 1024, 1) for s in samples
                                       if s["phase"] == "stream" and s["hwm_kib"]), default=None),
        "watch": {"exit_code": r["exit_code"], "killed_by_watchdog": r["killed_by_watchdog"],
                  "broken_pipe": r["broken_pipe"], "cpu_s": round(r["cpu_s"], 2),
                  "cpu_share": round(r["cpu_s"] / r["wall_s"], 3) if r["wall_s"] else None,
                  "cpu_s_per_loop_first": round(statistics.mean(cpu_per_loop[:3]), 3) if cpu_per_loop else None,
                  "cpu_s_per_loop_last": round(statistics.mean(cpu_per_loop[-3:]), 3) if cpu_per_loop else None,
                  "stderr_tail": r["stderr_tail"]},
        "loop_log": r["loop_log"],
        "rss_samples_mib": [[s["t"], round(s["rss_kib"] / 1024, 1), s["phase"]] for s in samples],
        "checks": checks, "ok": all(checks.values()),
    }
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(human(summary))
    print(f"summary: {out}")
    return 0 if summary["ok"] else 1


def human(s: dict) -> str:
    f, w, rss = s["findings"], s["watch"], s["rss"]
    lines = [
        f"soak: {s['packets_written']:,} packets in {s['loops']} loops of {s['capture']['packets']:,} "
        f"({s['capture']['connections']:,} connections each) over {s['stream_s']:.0f} s "
        f"({s['packets_per_s'] or 0:,.0f} packets/s; stopped by {s['stop_reason']}); wall {s['wall_s']:.0f} s",
        f"findings: expected {sum(f['expected_by_kind'].values()):,}, seen {sum(f['seen_by_kind'].values()):,}; "
        f"lost {f['lost']}, extra {f['extra']}; revisions {s['revisions']}",
    ]
    for k in sorted(set(f["expected_by_kind"]) | set(f["seen_by_kind"])):
        lines.append(f"  {k:24} expected {f['expected_by_kind'].get(k, 0):>8,}  seen {f['seen_by_kind'].get(k, 0):>8,}"
                     f"  (as first reported {f['raw_by_kind'].get(k, 0):,})")
    if "min_mib" in rss:
        lines.append(f"RSS after {rss['warmup_s']:.0f} s warm-up ({rss['samples']} samples): first {rss['first_mib']} "
                     f"min {rss['min_mib']} median {rss['median_mib']} max {rss['max_mib']} MiB; spread "
                     f"{rss['spread']:.1%} (tolerance {rss['tolerance']:.0%}), max/first {rss['max_over_first']:.3f}, "
                     f"slope {rss['slope_mib_per_min']:+.2f} MiB/min; peak {s['peak_rss_streaming_mib']} MiB while "
                     f"streaming, {s['peak_rss_mib']} MiB overall")
    else:
        lines.append(f"RSS: {rss.get('why')}")
    lines.append(f"watch: exit {w['exit_code']}, CPU {w['cpu_s']:.1f} s ({w['cpu_share']:.0%} of wall), "
                 f"per loop {w['cpu_s_per_loop_first']} s first → {w['cpu_s_per_loop_last']} s last"
                 + (", killed by the watchdog" if w["killed_by_watchdog"] else ""))
    if w["stderr_tail"]:
        lines.append("watch stderr: " + " | ".join(w["stderr_tail"][-3:]))
    lines.append("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in s["checks"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
