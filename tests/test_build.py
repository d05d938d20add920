"""The compiled modules are built from the sources in the tree, and make rebuilds them.

setup.py compiles some plain-Python modules (the HTTP framer, the engine) as well as the
.pyx kernels; the extension next to a module shadows its .py. An extension older than its
source means every test below runs yesterday's code.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _compiled_sources() -> list[str]:
    text = (REPO / "setup.py").read_text()
    return re.findall(r'Extension\(\s*"[^"]+",\s*\["([^"]+)"\]', text)


def test_setup_py_lists_the_compiled_sources() -> None:
    sources = _compiled_sources()
    assert "sockscope/engine.py" in sources and "sockscope/tcp/_tracker.pyx" in sources, sources


def test_every_extension_is_newer_than_its_source() -> None:
    stale = []
    for src in _compiled_sources():
        path = REPO / src
        built = sorted(path.parent.glob(path.stem + ".*.so"))
        assert built, f"{src}: no compiled extension next to it (run make test)"
        if built[-1].stat().st_mtime < path.stat().st_mtime:
            stale.append(src)
    assert not stale, f"extensions older than their sources, rebuild (make test / setup.py build_ext): {stale}"


def test_makefile_rebuilds_when_a_compiled_source_changes() -> None:
    # the install stamp is a checksum of the sources; each compiled one must be in it
    make = (REPO / "Makefile").read_text()
    listed = re.search(r"^COMPILED := (.*?)(?<!\\)$", make, re.M | re.S)
    assert listed, "Makefile has no COMPILED list"
    words = listed.group(1).replace("\\\n", " ").split()
    for src in _compiled_sources():
        assert src in words or any(Path(src).match(w) for w in words), f"{src} missing from Makefile COMPILED"
