"""Names for requests and clients that group alike things: path templates, UA families."""

from __future__ import annotations

import re
from typing import Any

from sockscope.analysis._cols import na

_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F-]{8,}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?!v\d+$)(?=[^/]*\d)[A-Za-z0-9_.~-]{4,})$")


def path_template(uri: str | None) -> str:
    """``/files/sess_8f3a1c2e9d?detail=full`` -> ``/files/{id}``: ids, numbers, uuids collapsed."""
    if na(uri):
        return "?"
    path = str(uri).split("?", 1)[0].split("#", 1)[0]
    if path.startswith("http://") or path.startswith("https://"):
        path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else "/"
    segs = [("{id}" if seg and _ID_SEGMENT.match(seg) else seg) for seg in path.split("/")]
    return "/".join(segs) or "/"


def request_type(method: Any, uri: Any) -> str:
    """``POST /exec``, ``GET /files/{id}``: the method and the path template."""
    m = "-" if na(method) else str(method)
    return f"{m} {path_template(uri)}"


def ua_family(ua: Any) -> str | None:
    """``axios/1.13.2`` -> ``axios/1.x``; ``node-fetch/1.0 (+https://...)`` -> ``node-fetch/1.x``."""
    if na(ua):
        return None
    m = re.match(r"\s*([A-Za-z][\w.+-]*)(?:/(\d+))?", str(ua))
    if not m:
        return str(ua)[:40]
    return f"{m.group(1)}/{m.group(2)}.x" if m.group(2) else m.group(1)


def seconds(t: float) -> str:
    """A duration the way every face writes it (text, plots, reports): ``5.000 s``,
    ``12.5 ms``, ``290 µs`` -- readable at a glance, precise enough to compare."""
    a = abs(t)
    if a >= 1:
        return f"{t:.3f} s"
    if a >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.0f} µs"
