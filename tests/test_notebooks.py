"""The notebooks run top to bottom, are committed without outputs, and match make_notebooks.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
KERNEL = "sockscope-test"


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NB_DIR / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


NOTEBOOKS = sorted(_generator().NOTEBOOKS)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec that runs *this* interpreter (the venv's), found first via JUPYTER_PATH.

    The spec an ipykernel install writes says just ``python``, which is whatever is first
    on PATH; the notebooks must run against the sockscope under test.
    """
    base = tmp_path_factory.mktemp("jupyter")
    spec_dir = base / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sockscope tests", "language": "python"}))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(base))
    # No SOCKSCOPE_ROOT, and the kernel runs in a temporary folder: the notebooks find the
    # captures on their own (beside the sockscope package they import).
    mp.delenv("SOCKSCOPE_ROOT", raising=False)
    # The kernel chooses its own (inline) backend, as it would for a user.
    mp.delenv("MPLBACKEND", raising=False)
    yield
    mp.undo()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, kernel_env, tmp_path):
    work = tmp_path / name
    shutil.copy(NB_DIR / name, work)
    nb = nbformat.read(work, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=180, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()        # raises CellExecutionError with the traceback on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # the plots render as images
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "expected at least one figure"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_up_to_date_with_generator(name):
    expected = _generator().render(name)
    assert (NB_DIR / name).read_text(encoding="utf-8") == expected, \
        f"{name} differs from notebooks/make_notebooks.py: run `python notebooks/make_notebooks.py`"
