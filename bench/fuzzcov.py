"""Coverage-guided fuzzing of every decoder, in process: a million inputs within the hour.

    python bench/fuzzcov.py                          # make fuzz: 1,000,000 inputs, <= 55 min
    python bench/fuzzcov.py --inputs 20000 --seconds 50 --no-build   # the suite's short run
    python bench/fuzzcov.py --targets http,segments --inputs 100000
    python bench/fuzzcov.py --replay FILE --target capture          # one input, in-process

The targets (``tests/fuzz/targets.py``) are functions of bytes, one per layer: ``capture``
(reader..HTTP framer..row store, every link type, gzip), ``segments`` (programs of TCP
segments: tracker and reassembly), ``http`` (the compiled framer against its own source run as
plain Python), ``logs`` (log reader and alignment) and ``load`` (``sockscope.load`` end to end,
agreeing with the core). Each runs under libFuzzer through atheris: inputs are mutated by
libFuzzer (and, for captures, by the structure-aware mutators of ``tests/fuzz/mutators.py``),
and kept when they reach new code.

Coverage: atheris instruments sockscope's Python modules (and the plain-Python framer). The
compiled modules (reader, tracker, framer, engine sink, row store) are seen too when clang is
installed: the driver builds them once more with ``-fsanitize=fuzzer-no-link`` into
``build/fuzz`` (a copy of the package; the normal build is untouched) and preloads atheris'
libFuzzer, so their edges guide the search as well. Without clang, the run says so and the
compiled code is fuzzed blind.

Bounds: a worker process runs one target for a budget of inputs (not a process per input),
under an address-space limit (``--mem-mb``) and libFuzzer's RSS limit and per-input timeout.
A worker that crashes, hangs or runs out of memory leaves its input under ``--out`` and is
started again on the rest of its budget. Unique crashes are told apart by exception type and
innermost sockscope frame, and each one is minimized (``-minimize_crash``).

The summary (printed, and ``--out``/summary.json): inputs per target and in all, rate, edges
and features covered, corpus size, unique crashes, timeouts and out-of-memory inputs, the
slowest input and the workers' peak RSS. Exit status 1 if anything was found.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build/fuzz"
# Shares of the input budget: the cheap decoders get most of it; end to end costs ~25 ms.
SHARES = {"capture": 0.38, "segments": 0.30, "http": 0.22, "logs": 0.06, "load": 0.04}
# Shares of the worker time when --seconds bounds the run (the costly targets get more), so
# every target runs even when the clock, not the input budget, ends the run.
TIME_SHARES = {"capture": 0.20, "segments": 0.17, "http": 0.10, "logs": 0.20, "load": 0.33}
CHUNK = {"capture": 100_000, "segments": 100_000, "http": 100_000, "logs": 20_000, "load": 10_000}


# -- the instrumented build ------------------------------------------------------------------

def _sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((REPO / "sockscope").rglob("*")):
        if p.suffix in (".py", ".pyx", ".pxd") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(REPO)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_instrumented(quiet: bool = False) -> Path | None:
    """A copy of the package with its compiled modules built for coverage, or None without clang."""
    clang = shutil.which("clang")
    if not clang:
        return None
    digest = _sources_digest()
    stamp = BUILD / f".built-{digest}"
    if stamp.exists():
        return BUILD
    if not quiet:
        print("building the compiled modules with coverage instrumentation (clang) into build/fuzz ...", flush=True)
    shutil.rmtree(BUILD, ignore_errors=True)
    env = dict(os.environ, CC=clang, LDSHARED=f"{clang} -shared", CFLAGS="-fsanitize=fuzzer-no-link -O1 -w")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(BUILD),
                    "--build-temp", str(REPO / "build/fuzz-tmp")], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    src = REPO / "sockscope"
    for p in src.rglob("*"):
        if p.is_file() and p.suffix in (".py", ".pxd", ".typed") and "__pycache__" not in p.parts:
            q = BUILD / "sockscope" / p.relative_to(src)
            q.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, q)
    stamp.touch()
    return BUILD


# -- worker: one target under libFuzzer --------------------------------------------------------

def worker(target: str, stats_path: str, tree: str | None, mem_mb: int, libfuzzer_argv: list[str]) -> None:
    lim = mem_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if tree:
        sys.path.insert(0, tree)
    sys.path.insert(1, str(REPO))
    import random

    import atheris

    with atheris.instrument_imports(include=["sockscope", "_sockscope_pure_http"]):
        import sockscope  # noqa: F401
        import sockscope.analysis  # noqa: F401
        import sockscope.engine  # noqa: F401
        import sockscope.logs  # noqa: F401
        from tests.fuzz import mutators as M
        from tests.fuzz import targets as T
        if target == "http":
            T.pure_session()
    if tree and not sockscope.__file__.startswith(tree):
        raise SystemExit(f"sockscope imported from {sockscope.__file__}, not the instrumented copy in {tree}")
    fn = T.TARGETS[target]
    st = {"target": target, "inputs": 0, "slowest_s": 0.0, "slowest_sha1": None, "slowest_len": 0,
          "max_rss_mb": 0.0}
    last = [time.monotonic()]

    def dump() -> None:
        st["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tmp = stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, stats_path)

    def one(data: bytes) -> None:
        t = time.perf_counter()
        try:
            fn(data)
        except BaseException:
            dump()
            raise
        dt = time.perf_counter() - t
        st["inputs"] += 1
        if dt > st["slowest_s"]:
            st.update(slowest_s=dt, slowest_sha1=hashlib.sha1(data).hexdigest(), slowest_len=len(data))
        if t - last[0] > 1.0:
            last[0] = t
            dump()

    custom = None
    if target in ("capture", "load"):
        corpus = M.Corpus(max_kb=64)
        names = list(M.MUTATORS)
        weights = [M.MUTATORS[n][1] for n in names]

        def custom(data: bytes, max_size: int, seed: int) -> bytes:
            rng = random.Random(seed)
            if rng.random() < 0.5:
                return atheris.Mutate(data, max_size)
            name = rng.choices(names, weights)[0]
            try:
                out = M.MUTATORS[name][0](rng, data, M.parse_layout(data), corpus)
            except Exception:  # noqa: BLE001 - a mutator that cannot work on this input: plain bytes
                return atheris.Mutate(data, max_size)
            if rng.random() < 0.05:
                out = M.gzip_wrap(rng, out)[0]
            return out[:max_size]

    atheris.Setup([sys.argv[0]] + libfuzzer_argv, one, custom_mutator=custom)
    dump()
    atheris.Fuzz()


# -- driver ------------------------------------------------------------------------------------

_DONE = re.compile(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def _signature(text: str) -> str:
    """Exception type and innermost project frame of the Python traceback in a worker's output
    (atheris prints the exception line first, then the traceback)."""
    tb = text.split("=== Uncaught Python exception: ===", 1)
    if len(tb) == 2:
        lines = tb[1].strip().splitlines()
        exc = re.sub(r"\d+", "N", lines[0] if lines else "?")[:160]
        frames = [ln.strip() for ln in lines[1:] if ln.strip().startswith('File "')]
        return f"{exc} @ {_where(frames)}"
    for key in ("out-of-memory", "ALARM: working on the last Unit", "deadly signal", "MemoryError"):
        if key in text:
            return key
    return "worker exited: " + (text.strip().splitlines() or ["?"])[-1][:160]


def _where(frames: list[str]) -> str:
    mine = [f for f in frames if "/sockscope/" in f]
    where = re.sub(r"line \d+", "line N", (mine or frames or ["?"])[-1])
    return re.sub(r'File ".*?/(sockscope|tests)/', r'File "\1/', where)


def minimize(target: str, data: bytes, tries: int = 4000) -> bytes:
    """The shortest input found (chunks removed, then bytes) that still fails the same way:
    same exception type and innermost sockscope frame."""
    import traceback

    sys.path.insert(0, str(REPO))
    from tests.fuzz import targets as T

    fn = T.TARGETS[target]

    def sig(d: bytes) -> str | None:
        try:
            fn(d)
        except Exception as exc:  # noqa: BLE001 - the failure being minimized
            frames = [f'File "{f.filename}", line {f.lineno}, in {f.name}' for f in traceback.extract_tb(exc.__traceback__)]
            return f"{type(exc).__name__} @ {_where(frames)}"
        return None

    want = sig(data)
    if want is None:
        return data
    n = 2
    while len(data) > 1 and tries > 0:
        step = max(1, len(data) // n)
        cut = False
        for i in range(0, len(data), step):
            tries -= 1
            cand = data[:i] + data[i + step:]
            if cand and sig(cand) == want:
                data, n, cut = cand, max(n - 1, 2), True
                break
            if tries <= 0:
                break
        if not cut:
            if step == 1:
                break
            n = min(len(data), n * 2)
    return data


class Job:
    def __init__(self, target: str, runs: int, n: int):
        self.target, self.runs, self.n = target, runs, n


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    targets = args.targets.split(",")
    unknown = set(targets) - set(SHARES)
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; known: {', '.join(SHARES)}")
    tree = None if args.no_build else build_instrumented()
    sys.path.insert(0, str(REPO))
    from tests.fuzz import targets as T

    share = sum(SHARES[t] for t in targets)
    budget = {t: max(1, round(args.inputs * SHARES[t] / share)) for t in targets}
    jobs: list[Job] = []
    k = 0
    left = dict(budget)
    while any(left.values()):
        for t in targets:
            if left[t]:
                r = min(left[t], CHUNK[t] if args.chunk is None else args.chunk)
                jobs.append(Job(t, r, k))
                left[t] -= r
                k += 1
    for t in targets:
        sd = out / "seeds" / t
        shutil.rmtree(sd, ignore_errors=True)
        sd.mkdir(parents=True)
        for name, data in T.seeds(t).items():
            (sd / re.sub(r"[^\w.-]", "_", name)).write_bytes(data[:T.MAX_LEN[t]])
        (out / "corpus" / t).mkdir(parents=True, exist_ok=True)
        (out / "artifacts").mkdir(parents=True, exist_ok=True)
    dict_path = out / "http.dict"
    dict_path.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in tok) + '"\n'
                                 for tok in sorted(set(_dict_tokens()))))
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               ARROW_DEFAULT_MEMORY_POOL="system", PYTHONWARNINGS="ignore")
    if tree:
        import atheris

        env["LD_PRELOAD"] = str(Path(atheris.path()) / "ubsan_with_fuzzer.so")
    t0 = time.monotonic()
    end_at = t0 + args.seconds if args.seconds else float("inf")
    res = {t: {"inputs": 0, "cov": 0, "ft": 0, "corpus": 0, "slowest_s": 0.0, "slowest": None,
               "max_rss_mb": 0.0, "restarts": 0, "wall_s": 0.0} for t in targets}
    found: dict[str, dict] = {}
    tshare = sum(TIME_SHARES[t] for t in targets)
    time_left = {t: (args.seconds * args.jobs * TIME_SHARES[t] / tshare if args.seconds else float("inf"))
                 for t in targets}
    running: list[tuple[Job, subprocess.Popen, Path, Path, float]] = []
    queue = list(jobs)
    last_report = t0

    def start(job: Job) -> None:
        stats = out / f"worker-{job.n}-{len(running)}.stats.json"
        log = out / f"worker-{job.n}.log"
        # a target's time share, plus what targets that have finished all their inputs left
        # unused: the cheap decoders end early, and their time goes to the slow ones
        busy = {j.target for j in queue} | {r[0].target for r in running} | {job.target}
        spare = sum(max(0.0, time_left[t]) for t in targets if t not in busy)
        remaining = max(1, int(min(end_at - time.monotonic(), time_left[job.target] + spare))) if args.seconds else 0
        lf = [f"-runs={job.runs}", f"-max_len={T.MAX_LEN[job.target]}", f"-timeout={args.timeout}",
              f"-rss_limit_mb={args.rss_mb}", "-print_final_stats=1", "-print_pcs=0",
              f"-artifact_prefix={out / 'artifacts'}/{job.target}-", f"-seed={args.seed + job.n}"]
        if remaining:
            lf.append(f"-max_total_time={remaining}")
        if job.target in ("http", "segments", "capture"):
            lf.append(f"-dict={dict_path}")
        lf += [str(out / "corpus" / job.target), str(out / "seeds" / job.target)]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", job.target, "--stats", str(stats),
               "--mem-mb", str(args.mem_mb)] + (["--tree", str(tree)] if tree else []) + ["--"] + lf
        fh = open(log, "w")
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        running.append((job, p, stats, log, time.monotonic()))

    def finish(job: Job, p: subprocess.Popen, stats: Path, log: Path, started: float) -> None:
        text = log.read_text(errors="replace")
        r = res[job.target]
        r["wall_s"] += time.monotonic() - started
        time_left[job.target] -= time.monotonic() - started
        st = json.loads(stats.read_text()) if stats.exists() else {}
        m = None
        for m in _DONE.finditer(text):
            pass
        # libFuzzer's own count when it finished; the worker's (written each second, and
        # just before a failure) otherwise
        fin = re.search(r"#(\d+)\s+DONE", text)
        done = int(fin.group(1)) if fin else st.get("inputs", 0)
        if m:
            r["cov"] = max(r["cov"], int(m.group(2)))
            r["ft"] = max(r["ft"], int(m.group(3)))
        r["inputs"] += done
        if st.get("slowest_s", 0) > r["slowest_s"]:
            r["slowest_s"] = st["slowest_s"]
            r["slowest"] = {"sha1": st["slowest_sha1"], "bytes": st["slowest_len"]}
        r["max_rss_mb"] = max(r["max_rss_mb"], st.get("max_rss_mb", 0.0))
        stats.unlink(missing_ok=True)
        clean = p.returncode == 0 and "DONE" in text
        if not clean:
            arts = _ARTIFACT.findall(text)
            sig = f"{job.target}: {_signature(text)}"
            kind = ("timeout" if "ALARM" in text else "oom" if "out-of-memory" in text or "MemoryError" in text
                    else "crash")
            entry = found.setdefault(sig, {"kind": kind, "target": job.target, "count": 0, "inputs": [],
                                           "log": str(log.with_suffix(f".{len(found)}.log"))})
            entry["count"] += 1
            entry["inputs"] += arts[:1]
            if entry["count"] == 1:
                shutil.copy(log, entry["log"])
            print(f"  ! {kind} in {job.target}: {sig.split(': ', 1)[1]}  input: {arts[0] if arts else '?'}",
                  flush=True)
            r["restarts"] += 1
            rest = job.runs - done - 1
            if rest > 0 and time.monotonic() < end_at and r["restarts"] <= args.max_restarts:
                queue.insert(0, Job(job.target, rest, job.n))
        log.unlink(missing_ok=True)

    while queue or running:
        queue[:] = [j for j in queue if time_left[j.target] > 2]
        while queue and len(running) < args.jobs and time.monotonic() < end_at - 2:
            start(queue.pop(0))
        if not running:
            break
        time.sleep(0.2)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                finish(*item)
        now = time.monotonic()
        if now - last_report > args.report_every:
            last_report = now
            total = sum(r["inputs"] for r in res.values())
            print(f"  {now - t0:,.0f} s: {total:,} inputs finished, {len(queue)} chunks queued, "
                  f"{len(found)} findings", flush=True)
    elapsed = time.monotonic() - t0
    for t in targets:
        res[t]["corpus"] = len(list((out / "corpus" / t).iterdir()))
    minimized = {}
    if found and not args.no_minimize:
        for sig, e in found.items():
            if e["kind"] == "crash" and e["inputs"]:
                minimized[sig] = _minimize(e, out, tree, env, args)
                e["minimized"] = minimized[sig]
    summary = {
        "revision": _revision(), "inputs": sum(r["inputs"] for r in res.values()), "elapsed_s": round(elapsed, 1),
        "jobs": args.jobs, "native_coverage": bool(tree), "targets": res,
        "unique_findings": len(found), "findings": found,
        "max_rss_mb": max((r["max_rss_mb"] for r in res.values()), default=0.0),
        "slowest": max(({"target": t, "s": round(r["slowest_s"], 3), **(r["slowest"] or {})}
                        for t, r in res.items()), key=lambda d: d["s"], default=None),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _print_summary(summary)
    return 1 if found else 0


def _dict_tokens() -> list[bytes]:
    sys.path.insert(0, str(REPO))
    from tests.fuzz import mutators as M

    toks = [t for t in M.HTTP_TOKENS if 0 < len(t) <= 64]
    toks += [b"HTTP/1.1 ", b"HTTP/1.0 ", b"\r\n\r\n", b"Content-Length: ", b"Transfer-Encoding: chunked",
             b"Connection: close", b"Connection: keep-alive", b"Upgrade: ", b"CONNECT ", b"HEAD ", b"0\r\n\r\n",
             b"Expect: 100-continue", b"Content-Encoding: gzip", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a",
             b"\x4d\x3c\xb2\xa1", b"\x1f\x8b\x08"]
    return toks


def _minimize(e: dict, out: Path, tree: Path | None, env: dict, args: argparse.Namespace) -> str | None:
    src = Path(e["inputs"][0])
    if not src.exists():
        return None
    dst = out / "artifacts" / f"minimized-{src.name}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--replay", str(src), "--target", e["target"],
           "--minimize-to", str(dst)]
    try:
        subprocess.run(cmd, cwd=REPO, env={k: v for k, v in env.items() if k != "LD_PRELOAD"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    except subprocess.TimeoutExpired:
        pass
    return str(dst) if dst.exists() else None


def _revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "sockscope"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except OSError:
        return "?"


def _print_summary(s: dict) -> None:
    print(f"\n{s['inputs']:,} inputs in {s['elapsed_s']:,.0f} s ({s['inputs'] / max(s['elapsed_s'], 1e-9):,.0f}/s, "
          f"{s['jobs']} workers) at {s['revision']}; coverage of the compiled modules: "
          f"{'yes' if s['native_coverage'] else 'no (clang missing: compiled code fuzzed blind)'}")
    print(f"{'target':<10}{'inputs':>11}{'per s':>8}{'edges':>8}{'features':>10}{'corpus':>8}{'slowest':>9}{'RSS MB':>8}")
    for t, r in s["targets"].items():
        rate = r["inputs"] / r["wall_s"] if r["wall_s"] else 0
        print(f"{t:<10}{r['inputs']:>11,}{rate:>8,.0f}{r['cov']:>8,}{r['ft']:>10,}{r['corpus']:>8,}"
              f"{r['slowest_s']:>8.2f}s{r['max_rss_mb']:>8.0f}")
    print(f"unique findings: {s['unique_findings']}; slowest input: {s['slowest']}; peak worker RSS {s['max_rss_mb']:.0f} MB")
    for sig, e in s["findings"].items():
        print(f"  {e['kind']} x{e['count']}: {sig}\n    input {e['inputs'][:1]} minimized {e.get('minimized')} log {e['log']}")


def replay(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO))
    from tests.fuzz import targets as T

    data = Path(args.replay).read_bytes()
    if args.minimize_to:
        small = minimize(args.target, data)
        Path(args.minimize_to).write_bytes(small)
        print(f"{args.target}: {len(data)} -> {len(small)} bytes, written to {args.minimize_to}")
        return 0
    T.TARGETS[args.target](data)
    print(f"{args.target}: {args.replay} ({len(data)} bytes) passes")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        i = argv.index("--")
        ap = argparse.ArgumentParser()
        ap.add_argument("--worker")
        ap.add_argument("--stats")
        ap.add_argument("--tree", default=None)
        ap.add_argument("--mem-mb", type=int, default=3072)
        a = ap.parse_args(argv[:i])
        worker(a.worker, a.stats, a.tree, a.mem_mb, argv[i + 1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs in all, shared among the targets")
    ap.add_argument("--seconds", type=float, default=3300, help="stop by then (0: no limit)")
    ap.add_argument("--targets", default=",".join(SHARES), help="comma-separated subset of " + ",".join(SHARES))
    ap.add_argument("--jobs", type=int, default=2, help="worker processes at once")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=None, help="inputs per worker process (default per target)")
    ap.add_argument("--timeout", type=int, default=20, help="seconds per input before it counts as a hang")
    ap.add_argument("--rss-mb", type=int, default=2048, help="libFuzzer's RSS limit per worker")
    ap.add_argument("--mem-mb", type=int, default=4096, help="address-space limit per worker (MiB)")
    ap.add_argument("--max-restarts", type=int, default=50, help="restarts per target after findings")
    ap.add_argument("--out", default=str(REPO / "bench/data/fuzzcov"), help="corpus, artifacts and summary")
    ap.add_argument("--no-build", action="store_true", help="use the normal build (no coverage of compiled code)")
    ap.add_argument("--no-minimize", action="store_true")
    ap.add_argument("--report-every", type=float, default=60.0)
    ap.add_argument("--replay", default=None, help="run one input file through --target in-process")
    ap.add_argument("--target", default="capture")
    ap.add_argument("--minimize-to", default=None, help="with --replay: write the smallest failing input here")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
