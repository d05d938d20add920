"""Shared test configuration, kept minimal so that no existing test changes behaviour:

* ``ROOT``, ``CRAFTED``, ``LAB``: the repository and its capture folders (from e2e_helpers,
  the one place they are defined), also as the session fixtures ``crafted_dir`` / ``lab_dir``;
* ``--update-golden``: rewrite the golden ``--json`` outputs of tests/test_golden.py instead of
  comparing against them (fixture ``update_golden``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_helpers import CRAFTED, LAB, ROOT

__all__ = ["CRAFTED", "LAB", "ROOT"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="tests/test_golden.py: rewrite tests/golden/*.json from the current CLI "
                          "output instead of comparing (each rewritten case is reported as skipped)")


@pytest.fixture(scope="session")
def update_golden(pytestconfig: pytest.Config) -> bool:
    return bool(pytestconfig.getoption("--update-golden"))


@pytest.fixture(scope="session")
def crafted_dir() -> Path:
    return CRAFTED


@pytest.fixture(scope="session")
def lab_dir() -> Path:
    return LAB
