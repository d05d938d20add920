"""Rules a capture must satisfy (``sockscope check`` and :func:`sockscope.check`).

Each rule is a small frozen object with ``evaluate(cap) -> RuleResult``. A rule whose
request selector matches no request at all cannot pass or fail on evidence: its result is
``empty`` (the CLI makes that a usage error unless ``--allow-empty``), so a typo in a
path never reads as PASS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from sockscope.analysis.detectors import require_kinds


class RuleError(ValueError):
    """A rule that cannot be evaluated as written (unknown kind, malformed spec)."""


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    ok: bool
    reason: str
    empty: bool = False          # the rule's selector matched no request

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "ok": self.ok, "reason": self.reason, "empty": self.empty}


@dataclass(frozen=True, slots=True)
class RequestKind:
    """``METHOD PATH-PREFIX`` (``GET /files``); a bare method means every path."""

    method: str
    prefix: str

    @classmethod
    def parse(cls, spec: str) -> "RequestKind":
        parts = spec.strip().split(None, 1)
        if not parts:
            raise RuleError(f"expected 'METHOD PATH-PREFIX', got {spec!r}")
        return cls(parts[0].upper(), parts[1].strip() if len(parts) > 1 else "/")

    def __str__(self) -> str:
        return f"{self.method} {self.prefix}"

    def mask(self, reqs: pd.DataFrame) -> np.ndarray:
        m = (reqs["method"].astype("string").str.upper() == self.method) & \
            reqs["uri"].astype("string").str.startswith(self.prefix)
        return m.fillna(False).to_numpy(dtype=bool)


@dataclass(frozen=True, slots=True)
class NoKind:
    """Fail if any finding of ``kind`` exists."""

    kind: str

    def __post_init__(self) -> None:
        try:
            require_kinds([self.kind])
        except ValueError as exc:
            raise RuleError(str(exc)) from None

    def evaluate(self, cap: Any) -> RuleResult:
        f = cap.findings
        hits = f[f["kind"].astype(str) == self.kind]
        if hits.empty:
            return RuleResult(f"--no {self.kind}", True, "none found")
        conns = sorted(set(hits["conn_id"].dropna().astype(int)))
        return RuleResult(f"--no {self.kind}", False,
                          f"{len(hits)} {self.kind} finding(s) on connection(s) {conns[:20]}"
                          f"{' …' if len(conns) > 20 else ''}: {hits.iloc[0]['summary']}")


@dataclass(frozen=True, slots=True)
class MaxIdleClose:
    """Fail if a connection with a request outstanding was closed after ``seconds`` or less of silence."""

    seconds: float

    def evaluate(self, cap: Any) -> RuleResult:
        cl = cap.diagnosis.context.closes
        bad = np.flatnonzero((cl.n_outstanding > 0) & ~np.isnan(cl.idle_s) & (cl.idle_s <= self.seconds))
        name = f"--max-idle-close {self.seconds:g}"
        if not len(bad):
            return RuleResult(name, True, "no waiting request was cut off by a short idle close")
        p = int(bad[0])
        cid = int(cap.diagnosis.context.conn_id[p])
        return RuleResult(name, False, f"{len(bad)} connection(s) closed by the {cl.closer[p]} after "
                                       f"{cl.idle_s[p]:.3f} s with a request outstanding (connection {cid})")


HEADER_COLUMNS = {"connection": ("req_connection", "resp_connection"), "keep-alive": ("resp_keep_alive",),
                  "host": ("host",), "user-agent": ("user_agent",),
                  "content-type": ("req_content_type", "resp_content_type")}


@dataclass(frozen=True, slots=True)
class Header:
    """Every request of ``target`` (or its response) carries header ``name`` containing ``value``."""

    target: RequestKind
    name: str
    value: str
    spec: str = ""

    @classmethod
    def parse(cls, spec: str) -> "Header":
        try:
            target, header = spec.split(":", 1)
            name, value = header.split(":", 1)
        except ValueError:
            raise RuleError(f"expected 'METHOD PATH-PREFIX: Header: value', got {spec!r}") from None
        name = name.strip().lower()
        if name not in HEADER_COLUMNS:
            raise RuleError(f"header {name!r} is not recorded; use one of {', '.join(HEADER_COLUMNS)}")
        return cls(RequestKind.parse(target), name, value.strip().lower(), spec)

    def evaluate(self, cap: Any) -> RuleResult:
        reqs = cap.requests
        name = f"--header '{self.spec or f'{self.target}: {self.name}: {self.value}'}'"
        sel = reqs[self.target.mask(reqs)]
        if not len(sel):
            return RuleResult(name, False, f"no request matches {self.target}", empty=True)
        has = np.zeros(len(sel), dtype=bool)
        for col in HEADER_COLUMNS[self.name]:
            has |= sel[col].astype("string").str.lower().str.contains(self.value, regex=False).fillna(False) \
                .to_numpy(dtype=bool)
        missing = sel[~has]
        if missing.empty:
            return RuleResult(name, True, f"all {len(sel)} matching request(s) carry it")
        m = missing.iloc[0]
        return RuleResult(name, False, f"{len(missing)} of {len(sel)} lack it (first: connection {m['conn_id']} "
                                       f"request {m['index']}, frame {m['first_frame']})")


def _empty_side(name: str, reqs: pd.DataFrame, *kinds: RequestKind) -> RuleResult | None:
    for k in kinds:
        if not k.mask(reqs).any():
            return RuleResult(name, False, f"no request matches {k}", empty=True)
    return None


@dataclass(frozen=True, slots=True)
class Separate:
    """Requests of kinds ``a`` and ``b`` never share a connection (in either order)."""

    a: RequestKind
    b: RequestKind

    def evaluate(self, cap: Any) -> RuleResult:
        reqs = cap.requests
        name = f"--separate '{self.a}' '{self.b}'"
        empty = _empty_side(name, reqs, self.a, self.b)
        if empty:
            return empty
        ca = set(reqs["conn_id"][self.a.mask(reqs)].tolist())
        cb = set(reqs["conn_id"][self.b.mask(reqs)].tolist())
        both = sorted(ca & cb)
        if not both:
            return RuleResult(name, True, f"never on one connection ({len(ca)} vs {len(cb)} connections)")
        port = cap.connections.loc[cap.connections["conn_id"] == both[0], "client_port"].iloc[0]
        return RuleResult(name, False, f"{len(both)} connection(s) carry both, e.g. connection {both[0]} "
                                       f"(client port {port})")


@dataclass(frozen=True, slots=True)
class NeverAfter:
    """No request of kind ``then`` on a connection that earlier carried one of kind ``first``.

    The incident's rule: ``POST /exec`` must never go out on a socket that carried
    ``GET /files`` before it; a ``GET /files`` after a ``POST /exec`` on one socket is fine.
    """

    first: RequestKind
    then: RequestKind

    def evaluate(self, cap: Any) -> RuleResult:
        reqs = cap.requests
        name = f"--never-after '{self.first}' '{self.then}'"
        empty = _empty_side(name, reqs, self.first, self.then)
        if empty:
            return empty
        a = reqs.loc[self.first.mask(reqs), ["conn_id", "index"]].groupby("conn_id")["index"].min()
        b = reqs.loc[self.then.mask(reqs), ["conn_id", "index", "first_frame"]]
        earliest = b["conn_id"].map(a)
        bad = b[earliest.notna() & (b["index"] > earliest.fillna(np.inf))]
        if bad.empty:
            return RuleResult(name, True, f"no {self.then} followed a {self.first} on its connection "
                                          f"({int(a.size)} connection(s) carried {self.first})")
        r = bad.iloc[0]
        return RuleResult(name, False, f"{len(bad)} {self.then} request(s) sent on a connection that had carried "
                                       f"{self.first} (first: connection {r['conn_id']} request {r['index']}, "
                                       f"frame {r['first_frame']})")


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    results: list[RuleResult]

    @property
    def empty(self) -> list[RuleResult]:
        return [r for r in self.results if r.empty]


def check(cap: Any, rules: Iterable[Any], allow_empty: bool = False) -> CheckResult:
    """Evaluate ``rules`` on ``cap``. With ``allow_empty`` a rule that matches no request passes.

    >>> check(cap, [NoKind("client_idle_timeout"),                      # doctest: +SKIP
    ...             NeverAfter(RequestKind.parse("GET /files"), RequestKind.parse("POST /exec"))]).ok
    """
    results = []
    for rule in rules:
        r = rule.evaluate(cap)
        if r.empty and allow_empty:
            r = RuleResult(r.rule, True, r.reason + " (allowed: --allow-empty)", True)
        results.append(r)
    return CheckResult(all(r.ok for r in results), results)


__all__ = ["CheckResult", "Header", "MaxIdleClose", "NeverAfter", "NoKind", "RequestKind", "RuleError", "RuleResult",
           "Separate", "check"]
