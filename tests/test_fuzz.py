"""Hostile and broken input, bounded: mutated captures and generated ones never make sockscope
raise anything but a SockscopeError, and the CLI never prints a traceback.

* A fixed-seed mutation run (``tests/fuzz/mutators.py``) over the small seed captures:
  up to ``SOCKSCOPE_FUZZ_INPUTS`` inputs (2,000) or ``SOCKSCOPE_FUZZ_SECONDS`` (20 s; the coverage-guided run of test_fuzzcov.py takes 40 s more),
  whichever comes first, two-tier as in ``make fuzz``: every input through the parsing core
  (``mutators.analyse_core``: reader..HTTP framer..row store and sink, ~1 ms), every
  ``SOCKSCOPE_FUZZ_FULL_EVERY``-th (10) also through ``sockscope.load`` + findings, and the
  two tiers must agree. A failure names the seed and index, writes the input to a
  temporary file and prints how to reproduce it. The long run is ``make fuzz``
  (``bench/fuzz.py``), in sandboxed workers.
* The core tier mirrors ``engine.run``: it agrees with the full pipeline on every small seed
  capture, and it fails loudly (never skips) if the engine internals it drives are renamed.
* Every mutator on every capture format (both tiers), so each of them is exercised on each run.
* Hypothesis strategies for structurally valid pcap / pcapng files with random records and
  for random TCP conversations: valid framing is read completely and without warnings.
* The CLI end to end on a few mutants: exit 3 with one line for unreadable input, exit 0 and
  a warning line for partly readable input, never a traceback.
"""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sockscope
from sockscope.capture import open_source
from sockscope.errors import SockscopeError

REPO = Path(__file__).resolve().parents[1]


from tests.fuzz import mutators as M  # noqa: E402

SEED = int(os.environ.get("SOCKSCOPE_FUZZ_SEED", "20260210"))
INPUTS = int(os.environ.get("SOCKSCOPE_FUZZ_INPUTS", "2000"))
SECONDS = float(os.environ.get("SOCKSCOPE_FUZZ_SECONDS", "20"))
FULL_EVERY = int(os.environ.get("SOCKSCOPE_FUZZ_FULL_EVERY", "10"))
SEED_KB = 64        # the in-suite run uses the small seeds: more inputs per second
CLI = REPO / ".venv/bin/sockscope"


@pytest.fixture(scope="module")
def corpus():
    return M.Corpus(max_kb=SEED_KB)


def _repro(tmp_path: Path, mu, res) -> str:
    p = tmp_path / f"fuzz-s{mu.seed}-i{mu.index}.pcap"
    p.write_bytes(mu.data)
    detail = (res.get("detail") or "").rstrip()
    return (f"{res['outcome']} on {mu.describe()}\n"
            f"  input written to {p}\n"
            f"  reproduce: .venv/bin/python -c \"import sockscope; sockscope.load('{p}').findings\"\n"
            f"        or: .venv/bin/python -c \"from tests.fuzz import mutators as M; "
            f"print(M.check(open('{p}', 'rb').read(), full=True))\"\n"
            f"        or: .venv/bin/python bench/fuzz.py --max-seed-kb {SEED_KB} --seed {mu.seed} --only {mu.index}\n"
            f"{detail[-3000:]}")


# -- the mutation engine itself ---------------------------------------------------------------

def test_mutants_are_a_pure_function_of_seed_and_index(corpus):
    a = [M.mutant(corpus, 7, i).data for i in range(20)]
    b = [M.mutant(corpus, 7, i).data for i in range(20)]
    assert a == b
    assert len(set(a)) > 15, "mutants of different indexes should differ"


def test_layout_finds_every_record_of_the_seed_captures(corpus):
    for name, raw in zip(corpus.names, corpus.raws):
        lay = M.parse_layout(raw)
        assert lay.kind in ("pcap", "pcapng"), name
        n = sum(1 for _ in open_source(io.BytesIO(raw)).packets())
        assert len(lay.packets()) == n, name


# -- the two tiers ----------------------------------------------------------------------------

def test_core_tier_agrees_with_the_full_pipeline_on_the_seed_captures(corpus):
    """analyse_core() wires the engine's parts as engine.run() does: same facts, same row
    counts as sockscope.load on every unmutated seed (check(full=True) compares them)."""
    problems = []
    for name, raw in zip(corpus.names, corpus.raws):
        res = M.check(raw, full=True)
        if res["outcome"] != "ok" or res.get("tier") != "full":
            problems.append(f"{name}: {res['outcome']} {res.get('detail', '')[-600:]}")
    assert not problems, "\n".join(problems)


def test_core_tier_fails_loudly_when_engine_internals_change(monkeypatch):
    from sockscope import engine

    M.core_parts.cache_clear()
    monkeypatch.delattr(engine, "_Point")
    try:
        with pytest.raises(M.CoreDrift, match="_Point"):
            M.analyse_core(b"")
        with pytest.raises(M.CoreDrift):
            M.check(b"", full=True)
    finally:
        M.core_parts.cache_clear()


def test_core_tier_fails_loudly_when_the_engine_wiring_changes(monkeypatch):
    """Names alone are not enough: a _Point whose read() now wants other arguments (or that
    no longer feeds its tracker) is caught by the one-request smoke capture."""
    from sockscope import engine

    class Changed(engine._Point):
        def read(self, one, progress, extra):
            super().read(one, progress)

    M.core_parts.cache_clear()
    monkeypatch.setattr(engine, "_Point", Changed)
    try:
        with pytest.raises(M.CoreDrift, match="no longer drives"):
            M.analyse_core(b"")
    finally:
        M.core_parts.cache_clear()


def test_tiers_disagreeing_is_an_invariant_outcome(monkeypatch):
    """A core tier that drifts from the engine (here: it loses a connection) is caught by
    the comparison on full-tier inputs."""
    raw = (REPO / "captures/crafted/incident-before-fix.pcap").read_bytes()
    real = M._core

    def drifted(data):
        out = real(data)
        out["connections"] -= 1
        return out

    monkeypatch.setattr(M, "_core", drifted)
    res = M.check(raw, full=True)
    assert res["outcome"] == "invariant" and "connections: core" in res["detail"], res


# -- bounded fuzz run -------------------------------------------------------------------------

def test_mutated_captures_raise_only_sockscope_errors(corpus, tmp_path):
    deadline = time.monotonic() + SECONDS
    failures: list[str] = []
    outcomes: dict[str, int] = {}
    tiers: dict[str, int] = {}
    tried = 0
    for i in range(INPUTS):
        if time.monotonic() > deadline:
            break
        mu = M.mutant(corpus, SEED, i)
        res = M.check(mu.data, full=FULL_EVERY > 0 and i % FULL_EVERY == 0)
        tried += 1
        outcomes[res["outcome"]] = outcomes.get(res["outcome"], 0) + 1
        tiers[res.get("tier", "-")] = tiers.get(res.get("tier", "-"), 0) + 1
        if res["outcome"] not in ("ok", "error"):
            failures.append(_repro(tmp_path, mu, res))
            if len(failures) >= 5:
                break
    print(f"fuzz seed {SEED}: {tried} inputs, outcomes {outcomes}, by deepest tier run {tiers}")
    assert not failures, f"{len(failures)} of {tried} mutants broke the contract:\n\n" + "\n\n".join(failures)
    assert tried >= min(INPUTS, 500), f"only {tried} inputs in {SECONDS} s: the run is too slow to mean much"
    assert outcomes.get("ok", 0) > tried // 2, outcomes
    if FULL_EVERY > 0:
        assert tiers.get("full", 0) >= min(tried // FULL_EVERY, 20), tiers


FORMAT_SEEDS = ["captures/crafted/mixed.pcap", "captures/crafted/fmt-pcapng-2if.pcapng",
                "captures/crafted/fmt-bigendian.pcap", "captures/crafted/fmt-sll2.pcap",
                "captures/crafted/fmt-gzip-noext.pcap"]


@pytest.mark.parametrize("mutator", list(M.MUTATORS))
def test_each_mutator_on_each_format_raises_only_sockscope_errors(mutator, tmp_path):
    corpus = M.Corpus([REPO / p for p in FORMAT_SEEDS])
    fn = M.MUTATORS[mutator][0]
    failures = []
    for k, raw in enumerate(corpus.raws):
        for r in range(1):
            rng = random.Random(f"{mutator}/{k}/{r}")
            data = fn(rng, raw, M.parse_layout(raw), corpus)
            if corpus.gz[k]:
                data = M.gzip_wrap(rng, data)[0]
            res = M.check(data, full=True)
            if res["outcome"] not in ("ok", "error"):
                mu = M.Mutant(-1, k * 10 + r, corpus.names[k], [mutator], data)
                failures.append(_repro(tmp_path, mu, res))
    assert not failures, "\n\n".join(failures)


# -- hypothesis: structurally valid files with random content ----------------------------------

_ADDR4 = st.sampled_from([M.ip4("10.0.0.5"), M.ip4("10.0.0.9"), M.ip4("192.0.2.1")])
_ADDR6 = st.sampled_from([bytes(15) + b"\1", bytes(15) + b"\2"])
_PORTS = st.sampled_from([80, 8000, 443, 40000, 40001, 22])
_FLAGS = st.sampled_from([M.SYN, M.SYN | M.ACK, M.ACK, M.PSH | M.ACK, M.FIN | M.ACK, M.RST, M.RST | M.ACK,
                          M.SYN | M.FIN, 0, 0x1FF])
_PAYLOAD = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    st.sampled_from(M.HTTP_TOKENS),
    st.builds(lambda m, u, h: b"%s /%s HTTP/1.1\r\n%s\r\n" % (m, u, h),
              st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT", b"get"]), st.binary(max_size=8),
              st.sampled_from([b"", b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n",
                               b"Content-Length: 4294967296\r\n"])),
    st.builds(lambda s, h, b: b"HTTP/1.1 %d OK\r\n%s\r\n%s" % (s, h, b),
              st.sampled_from([100, 101, 200, 204, 304, 500]),
              st.sampled_from([b"", b"Content-Length: 2\r\n", b"Transfer-Encoding: chunked\r\n"]),
              st.sampled_from([b"", b"ok", b"2\r\nok\r\n0\r\n\r\n", b"ffffffffffffffffff\r\n"])),
)


@st.composite
def tcp_frames(draw, linktype: int = 1) -> bytes:
    """A link-layer frame carrying IPv4 or IPv6 and a TCP segment with random fields."""
    seg = M.tcp(draw(_PORTS), draw(_PORTS), draw(st.integers(0, 2**32 - 1)),
                draw(st.integers(0, 2**32 - 1)), draw(_FLAGS), draw(_PAYLOAD),
                win=draw(st.sampled_from([0, 1024, 65535])))
    if draw(st.booleans()):
        ip = M.ipv4(draw(_ADDR4), draw(_ADDR4), seg)
        et = b"\x08\x00"
    else:
        ip = M.ipv6(draw(_ADDR6), draw(_ADDR6), seg)
        et = b"\x86\xdd"
    if linktype == 1:
        return bytes(12) + et + ip
    if linktype == 113:
        return bytes(14) + et + ip
    if linktype == 276:
        return et + bytes(18) + ip
    if linktype == 0:
        return struct.pack("<I", 2 if et == b"\x08\x00" else 30) + ip
    return ip   # RAW


_LINKTYPES = st.sampled_from([1, 113, 276, 0, 101, 228])


@st.composite
def pcap_files(draw) -> tuple[bytes, int]:
    """(file bytes, number of records) of a well-formed classic pcap."""
    be = draw(st.booleans())
    nanos = draw(st.booleans())
    lt = draw(_LINKTYPES)
    recs = draw(st.lists(st.one_of(tcp_frames(lt), st.binary(max_size=80)), max_size=30))
    out = [M.pcap_header(lt, nanos=nanos, big_endian=be)]
    ts = draw(st.integers(0, 2**32 - 1))
    for frame in recs:
        ts = (ts + draw(st.integers(-5, 10**6))) % 2**32
        out.append(M.pcap_record(ts, draw(st.integers(0, 999_999_999 if nanos else 999_999)), frame,
                                 big_endian=be))
    return b"".join(out), len(recs)


@st.composite
def pcapng_files(draw) -> tuple[bytes, int, bool]:
    """(file bytes, number of packet blocks, whether a packet names an undescribed interface)
    of a well-formed pcapng with several interfaces."""
    be = draw(st.booleans())
    lts = draw(st.lists(_LINKTYPES, min_size=1, max_size=4))
    out = [M.pcapng_shb(be)]
    for lt in lts:
        out.append(M.pcapng_idb(lt, be=be,
                                tsresol=draw(st.sampled_from([None, 6, 9, 0, 18, 19, 127, 0x80 | 20, 0x80 | 63, 255])),
                                tsoffset=draw(st.sampled_from([None, 0, 1, -1, 2**62, -(2**63), 2**63 - 1]))))
    n = 0
    undescribed = False
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["epb", "epb", "spb", "other"]))
        if kind == "other":
            out.append(M.pcapng_block(draw(st.sampled_from([4, 5, 0xBAD, 0x40000BAD])),
                                      draw(st.binary(max_size=24)), be=be))
            continue
        iface = draw(st.integers(0, len(lts)))      # one past the last: an undescribed interface
        frame = draw(st.one_of(tcp_frames(lts[min(iface, len(lts) - 1)]), st.binary(max_size=64)))
        if kind == "epb":
            out.append(M.pcapng_epb(iface, draw(st.integers(0, 2**64 - 1)), frame, be=be))
            undescribed |= iface >= len(lts)
        else:
            out.append(M.pcapng_spb(frame, be=be))
        n += 1
    return b"".join(out), n, undescribed


def _check_complete(data: bytes, n: int, undescribed: bool = False) -> None:
    try:
        cap = sockscope.load(io.BytesIO(data))
        cap.findings
    except SockscopeError:
        pytest.fail("a well-formed capture was refused")
    facts = cap.facts
    assert facts["packets"] == n
    assert sum(facts.get("status_counts", {}).values()) == n
    # random 64-bit timestamps / extreme if_tsoffset values are clamped, with one warning
    facts["warnings"] = [w for w in facts["warnings"] if not w.startswith("pcapng timestamps out of range")]
    if undescribed:
        # the one warning a well-formed file may earn: a packet naming an interface never described
        assert len(facts["warnings"]) == 1 and "never described" in facts["warnings"][0], facts["warnings"]
    else:
        assert not facts["warnings"], facts["warnings"]


_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(pcap_files())
def test_well_formed_pcap_with_random_records_is_read_completely_without_warnings(f):
    _check_complete(*f)


@_SETTINGS
@given(pcapng_files())
def test_well_formed_pcapng_with_random_blocks_and_timestamp_options_is_read_completely(f):
    _check_complete(*f)


@_SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), _FLAGS, st.integers(-3000, 3000), _PAYLOAD,
                          st.integers(-2_000_000, 8_000_000)), min_size=1, max_size=40))
def test_random_tcp_conversations_analyse_without_exceptions(steps):
    """A few 4-tuples, random flags, sequence jumps (incl. backwards), HTTP-ish payloads and
    timestamps that may go backwards: the tracker and HTTP layer take all of it."""
    buf = io.BytesIO()
    w = M.PcapWriter(buf)
    seq = {}
    ts = M.T0
    c, s = M.ip4("10.0.0.5"), M.ip4("10.0.0.9")
    for conn, from_client, flags, jump, payload, dt in steps:
        key = (conn, from_client)
        seq[key] = (seq.get(key, 1000 * (conn + 1) + (0 if from_client else 500_000)) + jump) % 2**32
        ts += dt
        cp = 40000 + conn
        ack = seq.get((conn, not from_client), 0)
        if from_client:
            w.tcp4(ts, c, s, cp, 80, seq[key], ack, flags, payload)
        else:
            w.tcp4(ts, s, c, 80, cp, seq[key], ack, flags, payload)
        seq[key] = (seq[key] + len(payload)) % 2**32
    cap = sockscope.load(io.BytesIO(buf.getvalue()))
    cap.findings
    assert cap.facts["tcp_packets"] == len(steps)
    assert len(cap.connections) >= 1


# -- the CLI end to end -----------------------------------------------------------------------

def _cli_cases(tmp: Path) -> list[tuple[str, bytes, int]]:
    good = (REPO / "captures/crafted/incident-before-fix.pcap").read_bytes()
    ng = (REPO / "captures/crafted/fmt-pcapng-2if.pcapng").read_bytes()
    lay = M.parse_layout(good)
    last = lay.records[-1]
    rec3 = lay.records[3]
    bad_caplen = bytearray(good)
    struct.pack_into("<I", bad_caplen, rec3.off + 8, 0x80000000)
    nglay = M.parse_layout(ng)
    ng_bad = bytearray(ng)
    blk = nglay.records[-2]
    struct.pack_into("<I", ng_bad, blk.off + blk.size - 4, blk.size + 4)
    gz = M.gzip_wrap(random.Random(1), good)[0]
    return [
        # (name, bytes, expected exit code)
        ("empty", b"", 3),
        ("garbage", b"this is not a capture\n" * 10, 3),
        ("cut-in-file-header", good[:13], 3),
        ("header-only", good[:24], 3),
        ("last-record-cut", good[:last.off + 20], 0),
        ("caplen-2GiB-in-record-4", bytes(bad_caplen), 0),
        ("pcapng-trailing-length-wrong", bytes(ng_bad), 0),
        ("gzip-cut", gz[:len(gz) // 2], 0),
        ("gzip-bad-trailer", gz[:-8] + b"\xde\xad\xbe\xef" * 2, 0),
    ]


def test_cli_exit_codes_and_one_line_messages_on_broken_input(tmp_path):
    if not CLI.exists():
        pytest.skip("sockscope CLI not installed in .venv")
    jobs = []
    for name, data, code in _cli_cases(tmp_path):
        p = tmp_path / f"{name}.pcap"
        p.write_bytes(data)
        cmds = ["summary", "requests", "diagnose"] if name in ("garbage", "last-record-cut") else ["summary"]
        jobs += [(name, cmd, p, code) for cmd in cmds]

    def run(job):
        name, cmd, p, code = job
        r = subprocess.run([str(CLI), cmd, str(p)], capture_output=True, text=True, timeout=120)
        return job, r

    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(run, jobs))
    problems = []
    for (name, cmd, p, code), r in results:
        where = f"sockscope {cmd} {name}: exit {r.returncode}, stderr {r.stderr!r}"
        if "Traceback" in r.stderr or "Traceback" in r.stdout:
            problems.append(where)
        elif r.returncode != code:
            problems.append(f"{where} (expected exit {code})")
        elif code == 3:
            lines = r.stderr.strip().splitlines()
            if len(lines) != 1 or not lines[0].startswith("sockscope: error:"):
                problems.append(f"{where} (expected one 'sockscope: error:' line)")
        elif not any(line.startswith("sockscope: warning:") for line in r.stderr.splitlines()):
            problems.append(f"{where} (expected a 'sockscope: warning:' line for the damage)")
    assert not problems, "\n".join(problems)
