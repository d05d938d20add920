"""Before vs after a fix (``sockscope compare`` and :func:`sockscope.compare`).

A *profile* of a capture counts findings, request types (requests, connections, how many
on reused sockets, how many killed, how many answered ``Connection: close``) and lists the
timer clusters. The verdict: "fixed" when the error and warning findings of BEFORE are gone
in AFTER, "not fixed" when a kind of them remains, "changed" when AFTER has new ones only,
"unchanged" when neither has any and nothing differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sockscope.analysis.detectors import KINDS
from sockscope.analysis.text import request_type

PROBLEMS = tuple(k for k, v in KINDS.items() if v.severity in ("error", "warning"))


def profile(cap: Any) -> dict[str, Any]:
    """The facts of one capture that a before/after comparison reads."""
    f = cap.findings
    reqs = cap.requests
    d = cap.diagnosis
    types: dict[str, dict[str, int]] = {}
    if len(reqs):
        seen: dict[tuple[Any, Any], str] = {}     # real traffic repeats its URIs: name each once
        t = [seen.get((m, u)) or seen.setdefault((m, u), request_type(m, u))
             for m, u in zip(reqs["method"].tolist(), reqs["uri"].tolist())]
        per_conn = reqs.groupby("conn_id")["index"].transform("count")
        frame = reqs.assign(type=t, reused=(per_conn > 1).to_numpy(),
                            killed=(reqs["outcome"].astype(str) != "complete").to_numpy(),
                            close=reqs["resp_connection"].astype("string").str.lower()
                            .str.contains("close", regex=False).fillna(False).to_numpy(dtype=bool))
        for typ, grp in frame.groupby("type", sort=True):
            types[str(typ)] = {"requests": int(len(grp)), "connections": int(grp["conn_id"].nunique()),
                               "on_reused_sockets": int(grp["reused"].sum()), "killed": int(grp["killed"].sum()),
                               "resp_connection_close": int(grp["close"].sum())}
    timers = [{"side": k.side, "outstanding": k.outstanding, "timeout_s": k.timer_s, "measured_s": k.timeout_s,
               "count": k.count, "is_timer": k.is_timer, "confidence": k.confidence, "headline": k.headline()}
              for k in d.clusters]
    return {"connections": int(len(cap.connections)), "requests": int(len(reqs)),
            "findings": {str(k): int(v) for k, v in f["kind"].astype(str).value_counts().items()},
            "request_types": types, "timers": timers}


@dataclass(frozen=True, slots=True)
class Comparison:
    verdict: str                 # fixed | not fixed | changed | unchanged
    reason: str
    before: dict[str, Any]
    after: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "before": self.before, "after": self.after}


def compare(before: Any, after: Any) -> Comparison:
    """Compare two analysed captures (or their :func:`profile` dicts)."""
    b = before if isinstance(before, dict) else profile(before)
    a = after if isinstance(after, dict) else profile(after)
    eb = {k: v for k, v in b["findings"].items() if k in PROBLEMS}
    ea = {k: v for k, v in a["findings"].items() if k in PROBLEMS}
    if eb and not ea:
        return Comparison("fixed", "gone after: " + ", ".join(f"{v} {k}" for k, v in eb.items()), b, a)
    if ea and any(k in eb for k in ea):
        return Comparison("not fixed", "still there: " + ", ".join(f"{v} {k} (before {eb.get(k, 0)})"
                                                                   for k, v in ea.items()), b, a)
    if ea:
        return Comparison("changed", "new problems after: " + ", ".join(f"{v} {k}" for k, v in ea.items()), b, a)
    return Comparison("changed" if b != a else "unchanged", "no error findings in either capture", b, a)


__all__ = ["Comparison", "PROBLEMS", "compare", "profile"]
