"""The engine's Arrow tables, and the pandas-free JSON commands built on them.

`sockscope summary --json` and `requests --json` write the engine's Arrow tables directly
(no pandas in the process); the Python API turns the same tables into pandas frames. Both
faces must say the same thing: the JSON the commands print is byte for byte what
``output.write_json`` makes of the API's frames.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

import sockscope
from sockscope import output, schema
from sockscope.cli import main

REPO = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for p in (REPO / "captures").rglob("*") if p.suffix in (".pcap", ".pcapng")
                  and "rotated" not in p.parts and p.stat().st_size > 24)    # > a bare pcap header
ROTATED = sorted((REPO / "captures" / "lab" / "rotated").glob("dump-*.pcap"))


def _frames_json(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    output.write_json(df, buf)
    return buf.getvalue()


def _cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(REPO / "captures")))
def test_json_commands_print_what_the_frames_hold(path: Path) -> None:
    cap = sockscope.load(str(path))
    conns = cap.connections.sort_values(["start", "conn_id"], kind="stable")
    assert _cli("summary", "--json", str(path)) == _frames_json(conns)
    assert _cli("requests", "--json", str(path)) == _frames_json(cap.requests)


@pytest.mark.parametrize("extra", [(), ("-j", "2"), ("--merge",)], ids=["serial", "jobs2", "merge"])
def test_json_commands_on_several_files(extra: tuple[str, ...]) -> None:
    if not ROTATED:
        pytest.skip("captures/lab/rotated is missing (make captures)")
    files = [str(p) for p in ROTATED]
    cap = sockscope.load(files, jobs=2 if "-j" in extra else 1, merge="--merge" in extra)
    conns = cap.connections.sort_values(["start", "conn_id"], kind="stable")
    assert _cli("summary", "--json", *extra, *files) == _frames_json(conns)
    assert _cli("requests", "--json", *extra, *files) == _frames_json(cap.requests)
    picked = sorted(set(cap.requests["conn_id"].tolist()))[:2]
    if picked:
        args = [a for c in picked for a in ("--conn", str(c))]
        want = cap.requests[cap.requests["conn_id"].isin(picked)]
        assert _cli("requests", "--json", *args, *extra, *files) == _frames_json(want)


def test_json_commands_never_import_pandas_or_rich() -> None:
    capture = REPO / "captures" / "crafted" / "incident-before-fix.pcap"
    script = (
        "import sys\n"
        "from sockscope.cli import main\n"
        f"sys.argv = ['sockscope', sys.argv[1], '--json', {str(capture)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('PANDAS', 'pandas' in sys.modules, 'RICH', 'rich' in sys.modules, file=sys.stderr)\n"
    )
    for command in ("summary", "requests"):
        proc = subprocess.run([sys.executable, "-c", script, command], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "PANDAS False" in proc.stderr, f"{command} --json imported pandas"
        assert "RICH False" in proc.stderr, f"{command} --json imported rich (only tables need it)"
        rows = json.loads(proc.stdout)
        assert rows and all("conn_id" in r for r in rows)


def test_load_arrow_tables_have_the_contracts_types() -> None:
    path = REPO / "captures" / "crafted" / "incident-before-fix.pcap"
    name, res = sockscope.load_arrow(str(path))
    assert name == str(path)
    for table_name, table in (("connections", res.connections), ("requests", res.requests),
                              ("gaps", res.gaps)):
        assert table.num_rows > 0, table_name
        spec = schema.spec(table_name)
        assert table.column_names[:len(spec)] == list(spec), f"{table_name}: contract columns first, in order"
        for col, kind in spec.items():
            typ = table.schema.field(col).type
            assert typ == schema.arrow_type(kind), f"{table_name}.{col}: {typ}"
            if isinstance(kind, schema.Categories):
                assert table.column(col).combine_chunks().dictionary.to_pylist() == list(kind)


def test_frames_from_empty_tables_keep_the_contract_dtypes() -> None:
    # a capture without a single request or silence still gives typed, empty tables
    path = REPO / "captures" / "crafted" / "fmt-null.pcap"
    _, res = sockscope.load_arrow(str(path), tables=("connections",))
    assert res.requests.num_rows == 0 and res.gaps.num_rows == 0
    conns, reqs, gaps = res.frames()
    for df, columns in ((conns, schema.CONNECTION_COLUMNS), (reqs, schema.REQUEST_COLUMNS),
                        (gaps, schema.GAP_COLUMNS)):
        for col, dtype in columns.items():
            assert df[col].dtype == dtype, f"{col}: {df[col].dtype} != {dtype}"
    assert isinstance(res.connections, pa.Table)


def _reference_cell(v: object, typ: pa.DataType) -> str:
    """What the row renderer must write for one cell, by plain Python means."""
    import math

    import numpy as np

    if v is None:
        return "null"
    if pa.types.is_timestamp(typ):
        return '"' + str(np.datetime64(v, "ns")) + 'Z"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "null"
    if isinstance(v, bytes):
        return v.decode("ascii")
    return json.dumps(v, ensure_ascii=True)


_CELLS = st.one_of(
    st.tuples(st.just(pa.int64()), st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), max_size=8)),
    st.tuples(st.just(pa.int32()), st.lists(st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)), max_size=8)),
    st.tuples(st.just(pa.int8()), st.lists(st.one_of(st.none(), st.integers(-2**7, 2**7 - 1)), max_size=8)),
    st.tuples(st.just(pa.uint16()), st.lists(st.one_of(st.none(), st.integers(0, 2**16 - 1)), max_size=8)),
    st.tuples(st.just(pa.uint32()), st.lists(st.one_of(st.none(), st.integers(0, 2**32 - 1)), max_size=8)),
    st.tuples(st.just(pa.uint64()), st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1)), max_size=8)),
    st.tuples(st.just(pa.float64()), st.lists(st.one_of(
        st.none(), st.floats(), st.integers(-2**53, 2**53).map(lambda ns: ns / 1e9)), max_size=8)),
    st.tuples(st.just(pa.timestamp("ns", tz="UTC")),
              st.lists(st.one_of(st.none(), st.integers(-2**63 + 1, 2**63 - 1)), max_size=8)),
    st.tuples(st.just(pa.bool_()), st.lists(st.one_of(st.none(), st.booleans()), max_size=8)),
    st.tuples(st.just(pa.string()), st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=8)),
    st.tuples(st.just(pa.dictionary(pa.int8(), pa.string())),
              st.lists(st.one_of(st.none(), st.sampled_from(["FIN", "RST", 'a"b', "é"])), max_size=8)),
    st.tuples(st.just(pa.binary()), st.lists(st.one_of(st.none(), st.sampled_from([b"[1,2]", b'{"a":1}'])),
                                             max_size=8)),
)


@given(st.lists(_CELLS, min_size=1, max_size=5), st.integers(0, 3), st.integers(0, 3), st.booleans())
@settings(max_examples=300, deadline=None)
def test_row_renderer_writes_what_python_would(columns: list, skip: int, start: int, first: bool) -> None:
    """Every cell type the renderer formats itself (ints, ns timestamps, floats, bools,
    texts with escapes, categories, pre-rendered JSON) against json.dumps / repr / numpy,
    on sliced arrays (the renderer must honour Arrow's offsets) from a start row."""
    from sockscope._rows import render_rows

    from sockscope.output import _prepared

    n = min(len(vals) for _, vals in columns)
    skip = min(skip, n)
    start = min(start, n - skip)
    arrays = [pa.array(vals[:n], type=typ).slice(skip) for typ, vals in columns]
    keys = [("{" if i == 0 else ",") + f'"k{i}":' for i in range(len(columns))]
    rows = range(start, n - skip)
    want = ",\n".join("".join(k + _reference_cell(vals[skip + i], typ) for k, (typ, vals) in zip(keys, columns))
                       + "}" for i in rows)
    if not first and len(rows):
        want = ",\n" + want
    got = render_rows([k.encode() for k in keys], [_prepared(a) for a in arrays], start, len(rows), first)
    assert got == want.encode("ascii")


@given(st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=1, max_size=6),
       st.lists(st.integers(-3, 5), max_size=12), st.integers(0, 2))
@settings(max_examples=200, deadline=None)
def test_gathered_texts_are_the_texts_at_the_codes(texts: list[str | None], codes: list[int], skip: int) -> None:
    import numpy as np

    from sockscope._rows import gather_texts

    skip = min(skip, len(texts) - 1)
    arr = pa.array(texts, type=pa.string()).slice(skip)     # offsets into a shared buffer
    codes = [c if c < len(arr) else -1 for c in codes]
    got = gather_texts(arr, np.array(codes, dtype=np.int32))
    assert got.to_pylist() == [None if c < 0 else texts[skip + c] for c in codes]
    got.validate(full=True)


_TAKE_TYPES = [
    (pa.int8(), st.integers(-128, 127)), (pa.uint16(), st.integers(0, 65535)),
    (pa.int32(), st.integers(-2**31, 2**31 - 1)), (pa.int64(), st.integers(-2**63, 2**63 - 1)),
    (pa.float64(), st.floats(allow_nan=False)), (pa.timestamp("ns", tz="UTC"), st.integers(0, 2**62)),
    (pa.duration("ns"), st.integers(-2**62, 2**62)), (pa.bool_(), st.booleans()),
    (pa.string(), st.text(max_size=4)), (pa.null(), st.none()),
]


@st.composite
def _take_case(draw):
    typ, values = draw(st.sampled_from(_TAKE_TYPES + [(None, None)]))
    n = draw(st.integers(1, 40))
    if typ is None:     # a category column: int8 codes into texts
        cats = ["a", "b", "c"]
        codes = draw(st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=n, max_size=n))
        arr = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(cats))
    else:
        arr = pa.array(draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n)), type=typ)
    skip = draw(st.integers(0, n - 1))
    arr = arr.slice(skip)           # row 0 at a bit offset, values at an offset
    rows = draw(st.lists(st.integers(0, len(arr) - 1), max_size=50))
    return arr, rows


@given(_take_case())
@settings(max_examples=400, deadline=None)
def test_take_without_compute_is_arrows_take(case) -> None:
    """The -j merge reorders every column type the tables have with _rows.take: it must be
    pyarrow's own take, nulls, offsets and all."""
    import numpy as np

    from sockscope._rows import take

    arr, rows = case
    got = take(arr, np.array(rows, dtype=np.int64))
    got.validate(full=True)
    want = arr.take(pa.array(rows, type=pa.int64()))
    assert got.type == want.type
    assert got.to_pylist() == want.to_pylist()
    assert got.null_count == want.null_count
    chunked = take(pa.chunked_array([arr[:1], arr[1:]], type=arr.type), np.array(rows, dtype=np.int64))
    assert chunked.to_pylist() == want.to_pylist()


def test_take_refuses_rows_out_of_range() -> None:
    import numpy as np

    from sockscope._rows import take

    with pytest.raises(IndexError):
        take(pa.array([1, 2, 3]), np.array([0, 3]))
    with pytest.raises(IndexError):
        take(pa.array(["x"]), np.array([-1]))


def test_summary_order_without_a_second_copy_of_the_table() -> None:
    from types import SimpleNamespace

    from sockscope.cli import _by_start

    ts = pa.timestamp("ns", tz="UTC")
    table = pa.table({"conn_id": pa.array([0, 1, 2, 3], pa.int64()),
                      "start": pa.array([30, 10, 10, 20], ts),
                      "client_ip": pa.array(["a", "b", None, "d"])})
    res = SimpleNamespace(connections=table)
    out = _by_start(res)
    assert res.connections is None      # the result gives its table up
    assert out.column("conn_id").to_pylist() == [1, 2, 3, 0]   # by start, ties by conn_id
    assert out.column("client_ip").to_pylist() == ["b", None, "d", "a"]
    assert out.schema == table.schema
    in_order = table.take([1, 2, 3, 0])
    assert _by_start(SimpleNamespace(connections=in_order)) is in_order    # no copy at all


def test_text_codes_with_and_without_an_index() -> None:
    from sockscope.engine import _text_codes

    texts: list[str] = []
    assert list(_text_codes(("GET", None, "POST", "GET"), {}, texts)) == [0, -1, 1, 0]
    assert texts == ["GET", "POST"]
    texts = []
    # no index (a column of mostly distinct texts): every text stored, none hashed
    assert list(_text_codes(("/a", None, "/a"), None, texts)) == [0, -1, 1]
    assert texts == ["/a", "/a"]


def test_console_entry_flushes_everything_and_keeps_exit_codes(tmp_path: Path) -> None:
    """The JSON commands leave without the interpreter's teardown: all output must still
    be written, and every other ending keep its exit code."""
    capture = str(REPO / "captures" / "crafted" / "incident-before-fix.pcap")
    for command in ("summary", "requests"):
        proc = subprocess.run([sys.executable, "-m", "sockscope.cli", command, "--json", capture],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == _cli(command, "--json", capture)
    missing = subprocess.run([sys.executable, "-m", "sockscope.cli", "summary", "--json", str(tmp_path / "no.pcap")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 3 and "no.pcap" in missing.stderr
    usage = subprocess.run([sys.executable, "-m", "sockscope.cli", "summary", "--bogus"],
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2


def test_every_column_of_the_loaded_frames_can_be_written():
    """The frames are built from Arrow one column at a time without copying them whole
    (schema.frame_from_columns): none of their columns may be a read-only view of Arrow
    memory, or a user's `df.loc[...] = ...` fails."""
    from pathlib import Path

    import sockscope

    path = Path(__file__).resolve().parents[1] / "captures/crafted/mixed.pcap"
    cap = sockscope.load(path)
    for name in ("connections", "requests", "gaps"):
        df = getattr(cap, name)
        assert len(df) >= 2, name
        for col in df.columns:
            df.loc[df.index[0], col] = df[col].iloc[1]      # raises ValueError on a read-only column
            a, b = df[col].iloc[0], df[col].iloc[1]
            assert (pd.isna(a) and pd.isna(b)) or a == b, (name, col)
