"""``diagnose --evidence``: the packets behind the findings as pcapng, read back with tshark.

Every check goes through the installed tshark: the evidence file opens without error; each
packet's comments name the frame it was copied from, and its bytes and timestamp equal
tshark's reading of that frame in the original; the finding comments sit on exactly the
frames the findings' evidence names (plus, for a silent drop, the retransmissions tshark
itself flags); every ``*_frame`` of every finding is there; context comments sit on the
connection's first packets; the section comment holds the verdict of each finding kind.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

import sockscope
from sockscope.errors import CaptureError
from tests.e2e_helpers import CRAFTED, LAB, SOCKSCOPE

TSHARK = shutil.which("tshark")
MERGECAP = shutil.which("mergecap")
EDITCAP = shutil.which("editcap")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (make test installs it as root)")

_COMMENT = re.compile(r"^(?P<who>[^:]+): (?P<roles>.*) \(frame (?P<frame>\d+)(?: = frame (?P<local>\d+))? "
                      r"of (?P<file>[^()]+)\)$")


# ---------------------------------------------------------------------------------------
# reading things back


def _cli(*args: Any) -> subprocess.CompletedProcess:
    return subprocess.run([SOCKSCOPE, *map(str, args)], capture_output=True, text=True, timeout=600)


def _diagnose(capture: Path, out: Path, *args: Any) -> list[dict]:
    """``diagnose --json --evidence out``: the findings it wrote the evidence of."""
    r = _cli("diagnose", capture, "--json", "--evidence", out, *args)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("sockscope: evidence:")]
    assert len(lines) == 1, r.stderr
    return json.loads(r.stdout)


def _tshark(path: Path, frames: set[int] | None = None, filt: str | None = None) -> list[dict]:
    """tshark's reading of a capture: frame number, time, lengths, bytes, comments."""
    cmd = [TSHARK, "-n", "-r", str(path), "-T", "json", "--no-duplicate-keys", "-x", "-j", "frame pkt_comment"]
    if frames is not None:
        if not frames:
            return []
        filt = "frame.number in {" + ",".join(map(str, sorted(frames))) + "}"
    if filt:
        cmd += ["-Y", filt]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"tshark could not read {path}: {out.stderr.strip()}"
    assert "damaged" not in out.stderr and "corrupt" not in out.stderr, out.stderr
    rows = []
    for p in json.loads(out.stdout or "[]"):
        layers = p["_source"]["layers"]
        fr = layers["frame"]
        comments = _comments(layers)
        rows.append({"number": int(fr["frame.number"]), "epoch": fr["frame.time_epoch"], "len": int(fr["frame.len"]),
                     "cap_len": int(fr["frame.cap_len"]), "raw": layers["frame_raw"][0],
                     "interface": int(fr.get("frame.interface_id", 0)),
                     "comments": [comments] if isinstance(comments, str) else list(comments)})
    return rows


def _comments(layers: dict) -> list[str] | str:
    """A packet's comments wherever this tshark puts them: ``frame.comment`` under the
    ``pkt_comment`` protocol (4.0), or ``pkt_comment`` / ``frame.comment`` elsewhere (other
    versions)."""
    for key in ("pkt_comment", "frame"):
        tree = layers.get(key)
        if isinstance(tree, dict):
            for field in ("frame.comment", "pkt_comment"):
                if isinstance(tree.get(field), (str, list)):
                    return tree[field]
    value = layers.get("pkt_comment")
    return value if isinstance(value, (str, list)) else []


def _fields(path: Path, filt: str, *fields: str) -> list[list[str]]:
    cmd = [TSHARK, "-n", "-r", str(path), "-Y", filt, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]


def _pcapng_blocks(path: Path) -> tuple[list[str], list[dict]]:
    """The section comments and the interfaces (link type, snaplen, if_tsresol, name) of a
    little-endian pcapng file, parsed here so the test does not rely on what it tests."""
    data = path.read_bytes()
    assert struct.unpack_from("<I", data, 0)[0] == 0x0A0D0D0A and struct.unpack_from("<I", data, 8)[0] == 0x1A2B3C4D
    comments, ifaces = [], []
    pos = 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        assert blen >= 12 and blen % 4 == 0 and struct.unpack_from("<I", data, pos + blen - 4)[0] == blen

        def options(o: int) -> list[tuple[int, bytes]]:
            out = []
            while o + 4 <= pos + blen - 4:
                code, olen = struct.unpack_from("<HH", data, o)
                if code == 0:
                    break
                out.append((code, data[o + 4:o + 4 + olen]))
                o += 4 + ((olen + 3) & ~3)
            return out

        if btype == 0x0A0D0D0A:
            comments += [v.decode() for c, v in options(pos + 24) if c == 1]
        elif btype == 1:
            lt, _, snap = struct.unpack_from("<HHI", data, pos + 8)
            opts = dict(options(pos + 16))
            ifaces.append({"linktype": lt, "snaplen": snap, "tsresol": opts.get(9, b"\x06")[0],
                           "name": opts.get(2, b"").decode()})
        pos += blen
    assert pos == len(data)
    return comments, ifaces


def _parse(comment: str) -> dict:
    m = _COMMENT.match(comment)
    assert m, f"comment without its frame: {comment!r}"
    d = m.groupdict()
    d["frame"] = int(d["frame"])
    d["local"] = int(d["local"]) if d["local"] else d["frame"]
    return d


def _named(f: dict) -> set[int]:
    """Every frame a finding's evidence names (any *_frame / *_frames key, the request chain)
    and its display filter selects."""
    out: set[int] = set()
    m = re.search(r"frame\.number in \{([\d,]+)\}", f["display_filter"])
    if m:
        out |= {int(x) for x in m.group(1).split(",")}

    def walk(d: dict) -> None:
        for k, v in d.items():
            if k == "requests":
                for r in v:
                    out.update(x for x in (r.get("first_frame"), r.get("request_last_frame")) if isinstance(x, int))
            elif k == "also_at":        # the same connection at another capture point: its own frames
                continue
            elif isinstance(v, dict):
                walk(v)
            elif k.endswith("_frame") and isinstance(v, int):
                out.add(v)
            elif k.endswith("_frames") and isinstance(v, list):
                out.update(x for x in v if isinstance(x, int))

    walk(f["evidence"])
    return out


def _key(f: dict) -> str:
    return f"{f['kind']}, connection {f['conn_id']}" if f["conn_id"] is not None else f["kind"]


# ---------------------------------------------------------------------------------------
# the whole check of one evidence file against its findings and its original


def _check(capture: Path, out: Path, findings: list[dict], streams: bool = True) -> dict[str, set[int]]:
    """Assert everything the module docstring lists; returns the original frames per comment
    author ("kind, connection N" or "context, connection N")."""
    packets = _tshark(out)
    shb, ifaces = _pcapng_blocks(out)
    verdict = "\n".join(shb)
    for kind in {f["kind"] for f in findings}:
        assert kind in verdict, f"the section comment does not name {kind}"
    if not findings:
        assert not packets and "No findings" in verdict
        return {}
    by_who: dict[str, set[int]] = {}
    wanted: dict[str, dict[int, dict]] = {}         # original file -> local frame -> evidence packet
    for p in packets:
        assert p["comments"], f"packet {p['number']} of {out} has no comment"
        parsed = [_parse(c) for c in p["comments"]]
        assert len({(c["frame"], c["local"], c["file"]) for c in parsed}) == 1, p["comments"]
        c0 = parsed[0]
        wanted.setdefault(c0["file"], {})[c0["local"]] = p
        for c in parsed:
            by_who.setdefault(c["who"], set()).add(c["frame"])
        if any(c["who"].startswith("context") for c in parsed):
            assert len(parsed) == 1, "a context comment is never beside evidence"
    # the bytes and timestamps are the original frame's, as tshark reads the original
    for name, frames in wanted.items():
        original = capture / name if capture.is_dir() else capture.parent / name
        got = {r["number"]: r for r in _tshark(original, set(frames))}
        for local, p in frames.items():
            o = got[local]
            assert (p["raw"], p["epoch"], p["len"], p["cap_len"]) == (o["raw"], o["epoch"], o["len"], o["cap_len"]), \
                f"packet {p['number']} of the evidence is not frame {local} of {name}"
    if not streams:
        return by_who
    # the finding comments sit on exactly the frames the findings name
    expected: dict[str, set[int]] = {}
    for f in findings:
        want = _named(f)
        if f["kind"] == "silent_drop":
            # its retransmissions, as tshark's own TCP analysis flags them
            want |= {int(r[0]) for r in _fields(capture, f"tcp.stream eq {f['conn_id']} && "
                                                         f"tcp.analysis.retransmission", "frame.number")}
        if f["kind"] == "syn_unanswered":
            want |= {int(r[0]) for r in _fields(capture, f"tcp.stream eq {f['conn_id']} && tcp.flags.syn == 1",
                                                "frame.number")}
        if f["kind"] == "root_cause_hint":
            want |= _root_cause_frames(capture, findings, f)
        expected.setdefault(_key(f), set()).update(want)
    evidence = {k: v for k, v in by_who.items() if not k.startswith("context")}
    assert evidence == expected
    # context: a connection's first packets, on its own tcp.stream
    for who, frames in by_who.items():
        if who.startswith("context"):
            cid = int(who.rsplit(" ", 1)[1])
            stream = sorted(int(r[0]) for r in _fields(capture, f"tcp.stream eq {cid}", "frame.number"))
            assert frames <= set(stream[:6]) and len(frames) <= 3, (who, frames, stream[:6])
            assert stream[0] in frames | {fr for k, v in evidence.items() if k.endswith(f"connection {cid}")
                                          for fr in v}
    return by_who


def _root_cause_frames(capture: Path, findings: list[dict], hint: dict) -> set[int]:
    """The requests on each killed socket up to the one the timer killed."""
    reqs = json.loads(_cli("requests", capture, "--json").stdout)
    died = {f["conn_id"]: f["request_index"] for f in findings if f["kind"] == "client_idle_timeout"}
    out = set()
    for r in reqs:
        cid = r["conn_id"]
        if cid in hint["evidence"]["killed_conn_ids"] and r["first_frame"] is not None and \
                (died.get(cid) is None or r["index"] <= died[cid]):
            out.add(r["first_frame"])
    return out


# ---------------------------------------------------------------------------------------
# the captures

CASES = [
    LAB / "before-fix" / "capture.pcap",          # client_idle_timeout, connection_reuse, root_cause_hint
    LAB / "middlebox-rst" / "client.pcap",        # the forged RST
    LAB / "silent-drop" / "client.pcap",          # retransmissions, no answer
    CRAFTED / "incident-rst-crossing.pcap",       # late data and the RST that refused it
    LAB / "heartbeat" / "capture.pcap",           # gap_frames
    LAB / "syn-blackhole" / "client.pcap",        # SYN retries
    LAB / "any-sll2" / "capture.pcap",            # Linux cooked v2
    LAB / "ipv6" / "capture.pcap",
    CRAFTED / "stale-reuse.pcap",                 # stale_reuse, server_idle_close
    CRAFTED / "rst-vs-fin.pcap",                  # refused, server_abort
]


@needs_tshark
@pytest.mark.parametrize("capture", [c for c in CASES if c.exists()], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_comments_sit_on_exactly_the_evidence(capture: Path, tmp_path: Path):
    out = tmp_path / "evidence.pcapng"
    findings = _diagnose(capture, out)
    assert findings, "these captures all have findings"
    by_who = _check(capture, out, findings)
    # every *_frame of every finding is in the file, under that finding's kind
    for f in findings:
        assert _named(f) <= by_who[_key(f)]
    comments = [c for p in _tshark(out) for c in p["comments"]]
    if capture.parent.name == "before-fix":
        assert any(re.search(r"client_idle_timeout, connection 0: client FIN after 5\.00\d s of silence; POST /exec "
                             r"outstanding", c) for c in comments)
    if capture.parent.name == "middlebox-rst":
        assert any("the forged RST: TTL 64, while the server's 4 other packet(s) arrived with TTL 63" in c
                   for c in comments)
    if capture.parent.name == "silent-drop":
        assert sum("retransmission" in c for c in comments) == 7
    if capture.name == "incident-rst-crossing.pcap":
        assert any(c.startswith("response_after_close, connection 0: the client's kernel answers the late data "
                                "with RST") and c.endswith("(frame 18 of incident-rst-crossing.pcap)")
                   for c in comments)


@needs_tshark
@pytest.mark.skipif(EDITCAP is None, reason="editcap (Wireshark) is not installed")
def test_every_file_format_gives_the_same_evidence(tmp_path: Path):
    """pcapng, nanosecond pcap and pcapng, gzip, big-endian: the same frames and comments,
    timestamps in the source's own resolution."""
    src = CRAFTED / "incident-rst-crossing.pcap"
    made = {}
    for name, fmt, base in (("ng.pcapng", "pcapng", src), ("ns.pcap", "nsecpcap", src)):
        subprocess.run([EDITCAP, "-F", fmt, str(base), str(tmp_path / name)], check=True)
        made[name] = tmp_path / name
    subprocess.run([EDITCAP, "-F", "pcapng", str(made["ns.pcap"]), str(tmp_path / "ns.pcapng")], check=True)
    made["ns.pcapng"] = tmp_path / "ns.pcapng"
    (tmp_path / "ng.pcapng.gz").write_bytes(gzip.compress(made["ng.pcapng"].read_bytes()))
    made["ng.pcapng.gz"] = tmp_path / "ng.pcapng.gz"
    data = src.read_bytes()
    be = [struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data, 0))]
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, cap, orig = struct.unpack_from("<IIII", data, pos)
        be.append(struct.pack(">IIII", sec, frac, cap, orig) + data[pos + 16:pos + 16 + cap])
        pos += 16 + cap
    (tmp_path / "be.pcap").write_bytes(b"".join(be))
    made["be.pcap"] = tmp_path / "be.pcap"
    reference = None
    for name, path in made.items():
        out = tmp_path / f"evidence-{name}.pcapng"
        findings = _diagnose(path, out)
        by_who = _check(path, out, findings)
        assert reference is None or by_who == reference, name
        reference = by_who
        _, ifaces = _pcapng_blocks(out)
        assert {i["tsresol"] for i in ifaces} == ({9} if name.startswith("ns") else {6}), name


@needs_tshark
@pytest.mark.skipif(MERGECAP is None, reason="mergecap (Wireshark) is not installed")
def test_a_rotated_chain_numbers_frames_across_files(tmp_path: Path):
    """Files of one rotation: frame numbers continue from file to file (mergecap -a), and
    each comment also gives the frame's number in the file that holds it."""
    pieces = sorted((LAB / "rotated").glob("dump-*.pcap"))
    if len(pieces) < 3:
        pytest.skip("captures/lab/rotated not recorded")
    chain = tmp_path / "chain"
    chain.mkdir()
    for p in pieces:
        shutil.copy(p, chain / p.name)
    out = tmp_path / "evidence.pcapng"
    findings = _diagnose(chain, out)
    assert {f["kind"] for f in findings} >= {"client_idle_timeout", "connection_reuse"}
    _check(chain, out, findings, streams=False)         # bytes against each piece, by its own numbers
    whole = tmp_path / "whole.pcap"
    subprocess.run([MERGECAP, "-a", "-F", "pcap", "-w", str(whole), *map(str, sorted(chain.iterdir()))], check=True)
    # the analysis' numbers are mergecap -a's: the same bytes there
    packets = _tshark(out)
    frames = {_parse(p["comments"][0])["frame"]: p for p in packets}
    assert any(_parse(p["comments"][0])["local"] != _parse(p["comments"][0])["frame"] for p in packets), \
        "some evidence lies in a later piece"
    got = {r["number"]: r for r in _tshark(whole, set(frames))}
    for n, p in frames.items():
        assert (p["raw"], p["epoch"]) == (got[n]["raw"], got[n]["epoch"]), n
    named = set().union(*(_named(f) for f in findings))
    assert named <= set(frames)


@needs_tshark
def test_capture_points_keep_their_own_numbers(tmp_path: Path):
    """A directory whose files overlap in time holds two capture points: both are in the
    evidence, on interfaces of their own, each packet naming its file and frame there."""
    d = LAB / "rotated"
    if not (d / "whole.pcap").exists():
        pytest.skip("captures/lab/rotated not recorded")
    out = tmp_path / "evidence.pcapng"
    findings = _diagnose(d, out)
    by_who = _check(d, out, findings, streams=False)
    files = {_parse(c)["file"] for p in _tshark(out) for c in p["comments"]}
    assert "whole.pcap" in files and any(f.startswith("dump-") for f in files)
    _, ifaces = _pcapng_blocks(out)
    assert len(ifaces) == 2
    for f in findings:
        assert _named(f) <= by_who[_key(f)]
    shb, _ = _pcapng_blocks(out)
    assert "2 capture points" in "\n".join(shb)


@needs_tshark
@pytest.mark.skipif(MERGECAP is None, reason="mergecap (Wireshark) is not installed")
def test_merged_files_are_numbered_as_mergecap_interleaves_them(tmp_path: Path):
    files = [LAB / "middlebox-rst" / "client.pcap", LAB / "middlebox-rst" / "server.pcap"]
    if not all(f.exists() for f in files):
        pytest.skip("captures/lab/middlebox-rst not recorded")
    cap = sockscope.load(files, merge=True)
    out = tmp_path / "evidence.pcapng"
    res = cap.write_evidence(out)
    assert res.packets > 0
    merged = tmp_path / "merged.pcapng"
    subprocess.run([MERGECAP, "-w", str(merged), *map(str, files)], check=True)
    packets = _tshark(out)
    frames = {_parse(p["comments"][0])["frame"]: p for p in packets}
    got = {r["number"]: r for r in _tshark(merged, set(frames))}
    for n, p in frames.items():
        assert p["raw"] == got[n]["raw"], n
    _check(files[0].parent, out, cap.findings.to_dict("records"), streams=False)


@needs_tshark
def test_no_findings_writes_only_the_verdict(tmp_path: Path):
    out = tmp_path / "evidence.pcapng"
    r = _cli("diagnose", CRAFTED / "incident-after-fix.pcap", "--evidence", out)
    assert r.returncode == 0 and "no findings" in r.stderr
    assert _tshark(out) == []
    shb, ifaces = _pcapng_blocks(out)
    assert "No findings in this capture" in shb[0] and not ifaces
    # a selection that matches nothing says so
    assert _cli("diagnose", LAB / "before-fix" / "capture.pcap", "--kind", "refused", "--evidence", out).returncode == 0
    assert "No findings match the selection" in _pcapng_blocks(out)[0][0]


@needs_tshark
def test_the_selection_limits_the_packets(tmp_path: Path):
    capture = CRAFTED / "mixed.pcap"
    everything, one_kind, one_conn = (tmp_path / f"{n}.pcapng" for n in ("all", "kind", "conn"))
    all_findings = _diagnose(capture, everything)
    sel = _diagnose(capture, one_kind, "--kind", "server_idle_close")
    assert {f["kind"] for f in sel} == {"server_idle_close"}
    _check(capture, one_kind, sel)
    kinds = {_parse(c)["who"].split(",")[0] for p in _tshark(one_kind) for c in p["comments"]}
    assert kinds <= {"server_idle_close", "context"}
    cid = all_findings[0]["conn_id"]
    by_conn = _diagnose(capture, one_conn, "--conn", cid)
    _check(capture, one_conn, by_conn)
    whos = {_parse(c)["who"] for p in _tshark(one_conn) for c in p["comments"]}
    assert all(w.endswith(f"connection {cid}") for w in whos)
    assert len(_tshark(one_kind)) < len(_tshark(everything)) and len(_tshark(one_conn)) < len(_tshark(everything))


@needs_tshark
def test_a_finding_keeps_at_most_its_cap(tmp_path: Path):
    cap = sockscope.load(LAB / "heartbeat" / "capture.pcap")
    out = tmp_path / "evidence.pcapng"
    res = cap.write_evidence(out, max_per_finding=2)
    assert res.capped > 0 and res.findings == len(cap.findings)
    per: dict[str, int] = {}
    for p in _tshark(out):
        for c in p["comments"]:
            who = _parse(c)["who"]
            if not who.startswith("context"):
                per[who] = per.get(who, 0) + 1
    # two findings share a kind and a connection here (two heartbeat responses)
    counts = {(str(f.kind), f.conn_id) for f in cap.findings.itertuples()}
    for (kind, cid) in counts:
        n = int(((cap.findings["kind"] == kind) & (cap.findings["conn_id"] == cid)).sum())
        assert per.get(f"{kind}, connection {cid}", 0) <= 2 * n
    assert "At most 2 packets per finding" in "\n".join(_pcapng_blocks(out)[0])
    assert any("more frame(s) of this finding are left out" in c for p in _tshark(out) for c in p["comments"])


def test_unwritable_targets_and_unreadable_sources_are_one_line_errors(tmp_path: Path):
    capture = LAB / "before-fix" / "capture.pcap"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for target in (blocker / "x.pcapng", tmp_path, tmp_path / "no-such-dir" / "x.pcapng"):
        r = _cli("diagnose", capture, "--evidence", target)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("sockscope: error: --evidence")
        assert not r.stdout
    r = subprocess.run([SOCKSCOPE, "diagnose", "-", "--evidence", str(tmp_path / "x.pcapng")], input=capture.read_bytes(),
                       capture_output=True, timeout=120)
    assert r.returncode == 2 and b"standard input" in r.stderr and r.stderr.count(b"\n") == 1
    assert not list(tmp_path.glob(".*.tmp")), "no half-written file left behind"
    own = tmp_path / "own.pcap"
    shutil.copy(capture, own)
    r = _cli("diagnose", own, "--evidence", own)
    assert r.returncode == 2 and "one of the capture's own files" in r.stderr and own.read_bytes() == capture.read_bytes()


def test_a_capture_that_changed_since_it_was_analysed_is_refused(tmp_path: Path):
    src = tmp_path / "capture.pcap"
    shutil.copy(LAB / "before-fix" / "capture.pcap", src)
    cap = sockscope.load(src)
    data = bytearray(src.read_bytes())
    struct.pack_into("<I", data, 24, struct.unpack_from("<I", data, 24)[0] + 1)    # frame 1 a second later
    src.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="changed since it was analysed"):
        cap.write_evidence(tmp_path / "evidence.pcapng")
    src.write_bytes(bytes(data[:2000]))                                            # cut short
    with pytest.raises(CaptureError, match="changed since it was analysed"):
        cap.write_evidence(tmp_path / "evidence.pcapng")
    assert not (tmp_path / "evidence.pcapng").exists()
    stream = sockscope.load(io.BytesIO((LAB / "before-fix" / "capture.pcap").read_bytes()))
    with pytest.raises(ValueError, match="read only once"):
        stream.write_evidence(tmp_path / "evidence.pcapng")


# ---------------------------------------------------------------------------------------
# the record walker numbers frames as the reader does, on any input

def _reader_frames(path: Path) -> list[tuple[int, int, str]] | None:
    from sockscope.capture import open_source

    try:
        src = open_source(path)
    except CaptureError:
        return None
    return [(p["frame"], p["ts_ns"], p["status"]) for p in src.packets()]


def _walker_frames(path: Path) -> list[tuple[int, int | None]] | None:
    from sockscope.evidence import _Gate, _Walker

    try:
        w = _Walker(str(path))
    except CaptureError:
        return None
    out = []
    for frame, rec in w.records(_Gate(0)):
        raw = w.raw(rec)
        out.append((frame, None if raw is None else raw.ts_ns))
    assert w.packets == len(out)
    return out


def _same_numbering(path: Path, what: str) -> None:
    a, b = _reader_frames(path), _walker_frames(path)
    assert (a is None) == (b is None), f"{what}: one of reader and walker refused it"
    if a is None:
        return
    assert len(a) == len(b), f"{what}: reader counts {len(a)} packets, the walker {len(b)}"
    for (fa, ta, status), (fb, tb) in zip(a, b):
        assert fa == fb
        # a packet the walker cannot copy is one the reader could not place on an interface
        assert (tb is None and status == "unsupported_link_type") or ta == tb, f"{what}: frame {fa}"


def test_the_walker_numbers_and_times_every_bundled_capture_as_the_reader():
    caps = [p for p in sorted(CRAFTED.glob("*.pcap*")) + sorted(LAB.glob("*/*.pcap*")) if p.suffix != ".json"]
    assert caps
    for p in caps:
        _same_numbering(p, str(p))


def test_the_walker_numbers_hostile_input_as_the_reader(tmp_path: Path):
    """Truncations, bad lengths, odd timestamps and resolutions, cut or corrupt gzip, reordered
    pcapng blocks (the fuzz suite's mutators): the walker stops where the reader stops and
    counts what it counts, so the evidence's frame numbers are the analysis' on damaged files too."""
    from tests.fuzz import mutators as M

    corpus = M.Corpus(max_kb=512)
    path = tmp_path / "mutant"
    for i in range(1500):
        mu = M.mutant(corpus, 11, i)
        path.write_bytes(mu.data)
        _same_numbering(path, mu.describe())


@needs_tshark
def test_two_points_put_the_other_points_packets_in_the_proof(tmp_path: Path):
    """middlebox-rst at both points: the evidence carries the same connection from the
    server-side file (its first and last packet, after which the RST never came), each
    packet naming its own file and frame."""
    files = [LAB / "middlebox-rst" / "client.pcap", LAB / "middlebox-rst" / "server.pcap"]
    if not all(f.exists() for f in files):
        pytest.skip("captures/lab/middlebox-rst not recorded")
    out = tmp_path / "evidence.pcapng"
    res = sockscope.load(files).write_evidence(out)
    assert res.packets > 0
    notes = [_parse(c) for p in _tshark(out) for c in p["comments"]]
    there = {n["frame"] for n in notes if n["file"] == "server.pcap" and "same connection" in n["roles"]}
    assert there == {1, 9}
    assert any(n["file"] == "client.pcap" and "forged RST" in n["roles"] for n in notes)
