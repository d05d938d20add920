"""Long fuzz run: mutated captures through the parsing core, every Nth also the whole pipeline.

    python bench/fuzz.py --inputs 100000 [--seconds N] [--jobs 2] [--seed 1] [--full-every 10]
    python bench/fuzz.py --seed 1 --only 1234          # re-run one input in-process (both tiers), show the result
    python bench/fuzz.py --adversarial [--syn 1000000] # big adversarial captures, one child each

Each input is the ``index``-th mutant of ``--seed`` (``tests/fuzz/mutators.py``: a pure
function of the two integers) of a seed capture (captures/crafted, captures/lab, and the
Zeek conformance captures when present).

Two tiers, both on the same bytes. Every input goes through the parsing core
(``mutators.analyse_core``: reader, tracker, reassembly, HTTP framer, row store and the
engine's sink, wired as ``engine.run`` wires them, with the invariants that hold there), about
1-2 ms for a mutant of the seed captures. Every ``--full-every``-th index (default 10; 1 = all)
also goes through ``sockscope.load`` + tables + findings + anomalies (``mutators.analyse``,
~80 ms, mostly pandas), and the two tiers must agree on every figure they both report.
The tier of an input is a function of its index; ``--only`` runs both tiers on it.

Workers are separate interpreters with an address-space limit (``--mem-mb``, default
1536 MiB; pyarrow's allocator is switched to the system one so the limit measures what is
used, not what jemalloc reserves) and a per-input wall-clock limit (``--timeout``). A worker
that times out or dies is replaced. The report gives the peak RSS of the workers.

Outcomes: ``ok``; ``error`` (a SockscopeError: the documented refusal of unreadable input);
``exception`` (anything else escaped: a bug); ``invariant`` (facts contradict themselves, or
the two tiers disagree); ``timeout``; ``memory`` (MemoryError under the limit); ``died`` (the
worker was killed by a signal or exited). Every input with a bad outcome is written to ``--out`` with the seed and
index in its name. Exit status 1 if there was any bad outcome.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAD = ("exception", "invariant", "timeout", "memory", "died")


def _mutators():
    spec = importlib.util.spec_from_file_location("sockscope_fuzz_mutators", REPO / "tests/fuzz/mutators.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sockscope_fuzz_mutators"] = mod
    spec.loader.exec_module(mod)
    return mod


def _child_env() -> dict[str, str]:
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                ARROW_DEFAULT_MEMORY_POOL="system", PYTHONHASHSEED="0")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- worker ----------------------------------------------------------------------------------

def _full(i: int, full_every: int) -> bool:
    return full_every > 0 and i % full_every == 0


def worker(seed: int, mem_mb: int, max_kb: int | None = None, full_every: int = 10) -> None:
    """Read indexes on stdin, answer one JSON line per index on stdout."""
    lim = mem_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    m = _mutators()
    import sockscope  # noqa: F401  (import before the first input: its cost is not an input's)
    import sockscope.analysis  # noqa: F401

    m.core_parts()      # the engine internals the core tier drives: fail now, loudly, if renamed

    corpus = m.Corpus(max_kb=max_kb)
    out = sys.stdout
    out.write(json.dumps({"ready": True, "rss_mb": _maxrss_mb()}) + "\n")
    out.flush()
    for line in sys.stdin:
        i = int(line)
        mu = m.mutant(corpus, seed, i)
        before = _maxrss_mb()
        t = time.perf_counter()
        res = m.check(mu.data, full=_full(i, full_every))
        res.update(i=i, dt=time.perf_counter() - t, rss_mb=_maxrss_mb(), rss_grew=_maxrss_mb() > before,
                   ops=mu.ops, source=mu.source, size=len(mu.data))
        out.write(json.dumps(res, default=str) + "\n")
        out.flush()
        if res["outcome"] == "memory":
            return          # the heap may be in a poor state: let the parent start a fresh worker


class Worker:
    def __init__(self, args: argparse.Namespace):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--seed", str(args.seed), "--mem-mb", str(args.mem_mb),
             "--full-every", str(args.full_every)]
            + (["--max-seed-kb", str(args.max_seed_kb)] if args.max_seed_kb else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(),
            text=True, bufsize=1)
        self.index: int | None = None
        self.deadline = 0.0
        ready = self.proc.stdout.readline()
        if not ready:
            raise SystemExit(f"fuzz worker failed to start: {self.proc.stderr.read()[-3000:]}")
        self.base_rss_mb = json.loads(ready)["rss_mb"]

    def send(self, i: int, timeout: float) -> None:
        self.index = i
        self.deadline = time.monotonic() + timeout
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        return self.proc.returncode


# -- parent ----------------------------------------------------------------------------------

class Stats:
    def __init__(self) -> None:
        self.by_outcome: collections.Counter[str] = collections.Counter()
        self.status: collections.Counter[str] = collections.Counter()
        self.warnings: collections.Counter[str] = collections.Counter()
        self.violations: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.ops: collections.Counter[str] = collections.Counter()
        self.inputs_with: collections.Counter[str] = collections.Counter()
        self.anomalies: collections.Counter[str] = collections.Counter()
        self.tiers: collections.Counter[str] = collections.Counter()
        self.tier_seconds: collections.Counter[str] = collections.Counter()
        self.max_rss_mb = 0.0
        self.max_rss_input: str = "-"
        self.slowest: tuple[float, str] = (0.0, "-")
        self.bad: list[dict] = []
        self.base_rss_mb = 0.0
        self.revision = "unknown"

    def add(self, res: dict, m) -> None:
        self.by_outcome[res["outcome"]] += 1
        if "tier" in res or "core_dt" in res:
            tier = res.get("tier", "core")
            self.tiers[tier] += 1
            self.tier_seconds["core"] += res.get("core_dt", 0.0)
            if tier == "full":
                self.tier_seconds["full"] += res.get("dt", 0.0) - res.get("core_dt", 0.0)
        for op in res.get("ops", ()):
            self.ops[op] += 1
        if res["outcome"] == "ok":
            for k, v in res.get("status_counts", {}).items():
                self.status[k] += v
            for w in res.get("warnings", ()):
                self.warnings[m.warning_kind(w)] += 1
            if res.get("warnings"):
                self.inputs_with["warnings"] += 1
            for k, v in res.get("http_violations", {}).items():
                self.violations[k] += v
            if res.get("http_violations"):
                self.inputs_with["http_violations"] += 1
            if any(k != "tcp" for k in res.get("status_counts", {})):
                self.inputs_with["non_tcp_status"] += 1
            # the rows Capture.anomalies would hold, by kind (derived from the same facts)
            for k, v in res.get("status_counts", {}).items():
                if k not in ("tcp", "not_ip", "not_tcp"):
                    self.anomalies[f"packet/{k}"] += v
            if res.get("warnings"):
                self.anomalies["file/damaged_input"] += len(res["warnings"])
            for k, v in res.get("http_violations", {}).items():
                self.anomalies[f"http/{k}"] += v
        elif res["outcome"] == "error":
            self.errors[m.warning_kind(res.get("detail", ""))] += 1
        rss = res.get("rss_mb", 0.0)
        if res.get("rss_grew") and rss >= self.max_rss_mb:
            self.max_rss_mb = rss
            self.max_rss_input = f"index {res.get('i')} ({res.get('source')}, {'+'.join(res.get('ops', []))})"
        if res.get("dt", 0) > self.slowest[0]:
            self.slowest = (res["dt"], f"index {res.get('i')} ({res.get('source')}, {'+'.join(res.get('ops', []))})")
        if res["outcome"] in BAD:
            self.bad.append(res)


def _save(m, corpus, seed: int, i: int, out_dir: Path, res: dict) -> Path:
    mu = m.mutant(corpus, seed, i)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / f"fuzz-s{seed}-i{i}-{res['outcome']}.pcap"
    p.write_bytes(mu.data)
    p.with_suffix(".txt").write_text(f"{mu.describe()}\n{res.get('detail', '')}\n")
    return p


def run(args: argparse.Namespace) -> int:
    m = _mutators()
    corpus = m.Corpus(max_kb=args.max_seed_kb)
    out_dir = Path(args.out)
    stats = Stats()
    stats.revision = _revision()    # what the workers load now, before anyone commits more
    t0 = time.monotonic()
    end_at = t0 + args.seconds if args.seconds else float("inf")
    workers = [Worker(args) for _ in range(args.jobs)]
    stats.base_rss_mb = max(w.base_rss_mb for w in workers)
    sel = selectors.DefaultSelector()
    for w in workers:
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
    next_i = args.start
    last_i = args.start + args.inputs
    done = 0
    last_report = t0
    print(f"fuzz: seed {args.seed}, inputs {args.start}..{last_i - 1}, {len(corpus)} seed captures, "
          f"{args.jobs} workers, limit {args.mem_mb} MiB address space, {args.timeout:.0f} s per input, "
          + (f"core tier for all, full pipeline for every {args.full_every}th index" if args.full_every > 0
             else "core tier only (--full-every 0)"), flush=True)

    def replace(w: Worker) -> Worker:
        sel.unregister(w.proc.stdout)
        w.kill()
        nw = Worker(args)
        sel.register(nw.proc.stdout, selectors.EVENT_READ, nw)
        workers[workers.index(w)] = nw
        return nw

    def record(res: dict) -> None:
        nonlocal done
        done += 1
        stats.add(res, m)
        if res["outcome"] in BAD:
            p = _save(m, corpus, args.seed, res["i"], out_dir, res)
            detail = (res.get("detail") or "").strip().splitlines()
            print(f"  ! {res['outcome']}: seed {args.seed} index {res['i']} ({res.get('source')}, "
                  f"{'+'.join(res.get('ops', []))}) -> {p}\n    {detail[-1] if detail else ''}", flush=True)

    for w in workers:
        if next_i < last_i:
            w.send(next_i, args.timeout)
            next_i += 1
    while any(w.index is not None for w in workers):
        now = time.monotonic()
        wait = max(0.05, min(w.deadline for w in workers if w.index is not None) - now)
        for key, _ in sel.select(timeout=min(wait, 5.0)):
            w: Worker = key.data
            line = w.proc.stdout.readline()
            if not line:
                rc = w.proc.poll()
                err = w.proc.stderr.read()[-3000:] if w.proc.stderr else ""
                i = w.index
                nw = replace(w)
                if i is not None:
                    outcome = "memory" if "MemoryError" in err or rc == -9 else "died"
                    mu = m.mutant(corpus, args.seed, i)
                    record({"outcome": outcome, "i": i, "ops": mu.ops, "source": mu.source,
                            "detail": f"worker exit status {rc}\n{err}"})
                w = nw
                w.index = None
            else:
                res = json.loads(line)
                w.index = None
                record(res)
                if res["outcome"] == "memory":
                    w = replace(w)
            if w.index is None and next_i < last_i and time.monotonic() < end_at:
                w.send(next_i, args.timeout)
                next_i += 1
        now = time.monotonic()
        for w in list(workers):
            if w.index is not None and now > w.deadline:
                i = w.index
                mu = m.mutant(corpus, args.seed, i)
                record({"outcome": "timeout", "i": i, "ops": mu.ops, "source": mu.source,
                        "detail": f"no answer within {args.timeout} s"})
                nw = replace(w)
                if next_i < last_i and now < end_at:
                    nw.send(next_i, args.timeout)
                    next_i += 1
        for w in workers:    # idle workers pick up work (after a timeout or a replacement)
            if w.index is None and next_i < last_i and time.monotonic() < end_at:
                w.send(next_i, args.timeout)
                next_i += 1
        if now - last_report > args.report_every:
            last_report = now
            rate = done / (now - t0)
            print(f"  {done:,} inputs in {now - t0:,.0f} s ({rate:.1f}/s): "
                  + ", ".join(f"{k} {v:,}" for k, v in stats.by_outcome.most_common())
                  + f"; max RSS {stats.max_rss_mb:,.0f} MiB", flush=True)
    for w in workers:
        sel.unregister(w.proc.stdout)
        w.proc.stdin.close()
        w.kill()
    elapsed = time.monotonic() - t0
    _report(stats, done, elapsed, args)
    return 1 if any(stats.by_outcome[k] for k in BAD) else 0


def _revision() -> str:
    """The commit the run tested (``+dirty`` when the work tree differs from it)."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def _report(stats: Stats, done: int, elapsed: float, args: argparse.Namespace) -> None:
    print(f"\nrevision:     {stats.revision} (at the start of the run)")
    print(f"inputs tried: {done:,} (seed {args.seed}, indexes {args.start}..{args.start + done - 1}) "
          f"in {elapsed:,.0f} s ({done / max(elapsed, 1e-9):.1f}/s, {args.jobs} workers)")
    print("by outcome:   " + ", ".join(f"{k} {stats.by_outcome.get(k, 0):,}"
                                       for k in ("ok", "error") + BAD))
    ncore = sum(stats.tiers.values())
    print(f"tiers:        core (reader..sink) {ncore:,} inputs, {stats.tier_seconds['core'] * 1e3 / max(ncore, 1):.2f} ms "
          f"each; full (load + tables + findings + anomalies, compared with core) {stats.tiers['full']:,} inputs, "
          f"{stats.tier_seconds['full'] * 1e3 / max(stats.tiers['full'], 1):.1f} ms each")
    print(f"max RSS:      {stats.max_rss_mb:,.0f} MiB in a worker (after imports: {stats.base_rss_mb:,.0f} MiB); "
          f"set by {stats.max_rss_input}")
    print(f"slowest:      {stats.slowest[0]:.2f} s, {stats.slowest[1]}")
    print("mutations:    " + ", ".join(f"{k} {v:,}" for k, v in stats.ops.most_common()))
    print("inputs with:  " + (", ".join(f"{k} {v:,}" for k, v in stats.inputs_with.most_common()) or "-"))
    print("packet status (facts.status_counts, summed over ok inputs):")
    for k, v in stats.status.most_common():
        print(f"  {k:24s} {v:>12,}")
    for title, counts, top in (
        ("anomalies by kind (Capture.anomalies rows: packet status, damaged input, http; summed over ok inputs)",
         stats.anomalies, 15),
        ("reader warnings (facts.warnings) by kind", stats.warnings, 25),
        ("http violations (facts.http_violations) by kind", stats.violations, 40),
        ("SockscopeError refusals by message", stats.errors, 15),
    ):
        print(title + ":")
        for k, v in counts.most_common(top):
            print(f"  {v:>8,}  {k}")
    if stats.bad:
        print(f"BAD OUTCOMES: {len(stats.bad)} (inputs saved in {args.out})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "inputs": done, "seconds": elapsed, "seed": args.seed, "jobs": args.jobs, "revision": stats.revision,
            "full_every": args.full_every, "tiers": dict(stats.tiers), "tier_seconds": dict(stats.tier_seconds),
            "anomalies": dict(stats.anomalies), "base_rss_mb": stats.base_rss_mb,
            "by_outcome": dict(stats.by_outcome), "status_counts": dict(stats.status),
            "warnings": dict(stats.warnings), "http_violations": dict(stats.violations),
            "errors": dict(stats.errors), "max_rss_mb": stats.max_rss_mb, "mutations": dict(stats.ops),
            "bad": [{k: v for k, v in b.items() if k != "warnings"} for b in stats.bad],
        }, indent=1, default=str))


def only(args: argparse.Namespace) -> int:
    m = _mutators()
    mu = m.mutant(m.Corpus(max_kb=args.max_seed_kb), args.seed, args.only)
    print(mu.describe() + f" tier={'full' if _full(args.only, args.full_every) else 'core'} (both run here)")
    res = m.check(mu.data, full=True)
    print(json.dumps(res, indent=1, default=str))
    if args.write:
        Path(args.write).write_bytes(mu.data)
        print(f"written to {args.write}")
    return 1 if res["outcome"] in BAD else 0


# -- adversarial captures at bench sizes -------------------------------------------------------

def adversarial(args: argparse.Namespace) -> int:
    m = _mutators()
    tmp = Path(tempfile.mkdtemp(prefix="sockscope-adv-"))
    big = 1 << 20
    cases = [
        (f"syn_flood_{args.syn}", lambda p: m.write_syn_flood(p, args.syn), {}),
        (f"syn_flood_{args.syn}_max_open_100k", lambda p: m.write_syn_flood(p, args.syn), {"max_open": 100_000}),
        ("pipelined_100k", lambda p: m.write_pipelined(p, 100_000), {}),
        ("pipelined_1M", lambda p: m.write_pipelined(p, 1_000_000), {}),
        ("content_length_4G", lambda p: m.write_exchange(
            p, b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 4294967296\r\n\r\n" + b"x" * big), {}),
        ("chunk_size_2^64+1", lambda p: m.write_exchange(
            p, b"GET / HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\n" + b"x" * 100), {}),
        ("header_line_16MB", lambda p: m.write_exchange(
            p, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (16 * big) + b"\r\n\r\n", None), {}),
        ("headers_1M", lambda p: m.write_exchange(p, b"GET / HTTP/1.1\r\n" + b"X-a: b\r\n" * big + b"\r\n", None), {}),
        ("timestamps_backwards", lambda p: m.write_backwards(p, 10_000), {}),
        ("caplen_4G", m.write_huge_caplen, {}),
        ("pcapng_100k_interfaces", lambda p: m.write_many_interfaces(p, 100_000), {}),
    ]
    if args.only_case:
        cases = [c for c in cases if args.only_case in c[0]]
    bad = 0
    print(f"adversarial captures (address-space limit {args.mem_mb} MiB per child), in {tmp}")
    for name, build, opts in cases:
        p = tmp / f"{name}.pcap"
        t = time.perf_counter()
        build(p)
        built = time.perf_counter() - t
        try:
            res = m.measure(p, timeout=args.adv_timeout, mem_mb=args.mem_mb, **opts)
        except Exception as exc:  # noqa: BLE001
            res = {"outcome": "died", "detail": str(exc)[-2000:]}
        if res["outcome"] not in ("ok", "error"):
            bad += 1
        keep = ("outcome", "seconds", "max_rss_mb", "packets", "connections", "requests", "evicted",
                "outcomes", "conn_requests", "conn_states", "warnings", "http_violations", "finding_kinds",
                "first_requests", "detail")
        print(f"- {name}: {p.stat().st_size / 1e6:,.1f} MB, built in {built:.1f} s"
              + (f", options {opts}" if opts else ""))
        for k in keep:
            if k in res and res[k] not in (None, [], {}):
                v = json.dumps(res[k], default=str)
                print(f"    {k}: {v[:600]}")
        p.unlink()
    tmp.rmdir()
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=100_000, help="number of mutants to try")
    ap.add_argument("--seconds", type=float, default=0, help="stop starting new inputs after this long")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="first index")
    ap.add_argument("--full-every", type=int, default=10,
                    help="every Nth index also runs the full pipeline (load + tables + findings); "
                         "1 = every input, 0 = core tier only")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per input before it counts as a hang")
    ap.add_argument("--mem-mb", type=int, default=1536, help="address-space limit per worker (MiB)")
    ap.add_argument("--out", default=str(REPO / "bench/data/fuzz"), help="where failing inputs are written")
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    ap.add_argument("--report-every", type=float, default=30.0, help="progress line interval (s)")
    ap.add_argument("--max-seed-kb", type=int, default=None,
                    help="use only seed captures up to this size (tests/test_fuzz.py uses 64)")
    ap.add_argument("--only", type=int, default=None, help="run just this index in-process and print the result")
    ap.add_argument("--write", default=None, help="with --only: write the input to this path")
    ap.add_argument("--adversarial", action="store_true", help="run the big adversarial captures instead")
    ap.add_argument("--syn", type=int, default=1_000_000, help="SYNs in the adversarial flood")
    ap.add_argument("--only-case", default=None, help="with --adversarial: cases whose name contains this")
    ap.add_argument("--adv-timeout", type=float, default=1800.0, help="seconds per adversarial capture")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.seed, args.mem_mb, args.max_seed_kb, args.full_every)
        return 0
    if args.only is not None:
        return only(args)
    if args.adversarial:
        return adversarial(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
