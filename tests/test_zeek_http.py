"""sockscope's requests table against Zeek's http.log on Zeek's own test traces.

Rows are matched by connection 4-tuple and trans_depth (= our `index`). Compared: method,
host, uri, version (Zeek logs the reply's version), status_code, request_body_len and
response_body_len (Zeek counts decoded bodies: we compare our decoded length when we have
one). Each case asserts its exact set of disagreeing fields (KNOWN, with reasons).
"""

from __future__ import annotations

import pytest

import sockscope
from tests.zeekref import differing_fields, report_match_rate, cases, read_log, require_zeek_dir, traces

FIELDS = ["method", "host", "uri", "version", "status_code", "request_body_len", "response_body_len"]

_UNPARSED = ("Zeek writes an extra row with every field unset for bytes it could not parse as "
             "HTTP; sockscope records them as a protocol violation, not a request")
KNOWN: dict[str, dict[str, str]] = {
    "http-09": {"rows": _UNPARSED},
    "http-no-version": {"rows": _UNPARSED},
    "http-methods": dict.fromkeys(
        ["host", "method", "response_body_len", "status_code", "uri", "version"],
        "malformed request lines ('GET / HTTP/1.', 'OPTIONSHTTP/1.1', 'CCM_POST / HTTP/1.'): Zeek "
        "salvages method and URI and then reads the reply as HTTP/0.9 (status 0, whole reply as "
        "body); sockscope does not accept such a line as a request (a no_request row) and frames "
        "the server's real HTTP/1.x reply (e.g. status 400, body after the headers)"),
    "http-no-crlf": {"request_body_len": "the client sends a CRLF after each POST body that "
                     "Content-Length does not cover; Zeek counts those 2 bytes into the body, "
                     "sockscope follows Content-Length"},
    "http-smuggle-request": {"request_body_len": "the request body has Content-Encoding: gzip; "
                             "Zeek logs its decoded size (57), sockscope the bytes on the wire "
                             "(Content-Length 80); decoding is done for responses only"},
}


def _http_log(case_dir):
    for name in ("http.log", "http.log.cut"):
        if (case_dir / name).exists():
            return case_dir / name
    return None


def _v(x) -> str:
    if x is None or x is pd_NA or (isinstance(x, float) and x != x):
        return "-"
    return str(x)


try:
    from pandas import NA as pd_NA
except ImportError:  # pragma: no cover
    pd_NA = None


def compare_case(case_dir):
    ref = read_log(_http_log(case_dir))
    rows = []
    for t in traces(case_dir):
        cap = sockscope.load(t)
        conns = cap.connections.set_index("conn_id")
        for r in cap.requests.itertuples():
            c = conns.loc[r.conn_id]
            rows.append(((c.client_ip, str(c.client_port), c.server_ip, str(c.server_port)), r))
    ours = {}
    for key, r in rows:
        ours.setdefault((key, str(r.index)), r)
    single = len({k for k, _ in rows}) == 1
    ok: dict[str, int] = {}
    total: dict[str, int] = {}
    notes = []
    for z in ref:
        if "id.orig_h" in z:
            key = (z["id.orig_h"], z["id.orig_p"], z["id.resp_h"], z["id.resp_p"])
        elif single:
            key = rows[0][0]
        else:
            continue
        depth = z.get("trans_depth", "1")
        r = ours.get((key, depth))
        total["rows"] = total.get("rows", 0) + 1
        if r is None:
            # Zeek writes an all-unset row for bytes it could not parse; we write none.
            notes.append(f"{key} depth {depth}: missing (zeek method {z.get('method')})")
            continue
        ok["rows"] = ok.get("rows", 0) + 1
        resp_len = r.response_body_decoded_len if not _missing(r.response_body_decoded_len) else r.response_body_len
        mine = {"method": _v(r.method), "host": _v(r.host), "uri": _v(r.uri),
                "version": _v(r.resp_version) if not _missing(r.resp_version) else
                ("0.9" if _v(r.version) == "0.9" else "-"),
                "status_code": _v(r.status) if not _missing(r.status) else ("0" if _v(r.version) == "0.9" else "-"),
                "request_body_len": _v(r.request_body_len), "response_body_len": _v(resp_len)}
        for f in FIELDS:
            if f not in z:
                continue
            total[f] = total.get(f, 0) + 1
            good = z[f] == mine[f]
            ok[f] = ok.get(f, 0) + (1 if good else 0)
            if not good:
                notes.append(f"{key} depth {depth} {f}: zeek {z[f]!r} ours {mine[f]!r}")
    return ok, total, notes


def _missing(x) -> bool:
    return x is None or x is pd_NA or (isinstance(x, float) and x != x)


ALL = [c for c in cases() if _http_log(c[1]) is not None]


@pytest.mark.parametrize("name,case_dir", ALL, ids=[c[0] for c in ALL])
def test_http_log_matches_zeek(name, case_dir):
    bad, notes = differing_fields(compare_case, case_dir)
    assert bad == set(KNOWN.get(name, {})), "\n".join(notes)


def test_http_log_match_rate(capsys):
    assert report_match_rate("http.log", ALL, compare_case, capsys) > 0.85
