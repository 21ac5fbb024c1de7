"""The notebooks stay in step with the library: their code parses, every innerprobe name they
import exists, they are committed without outputs, each takes its size from one parameter cell,
and (slow) each runs top to bottom on the embedded SmolLM2 at that small size."""

from __future__ import annotations

import ast
import importlib
import json
import logging
import os
import time
from pathlib import Path

import pytest
from conftest import requires_smollm2

REPO = Path(__file__).parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
log = logging.getLogger(__name__)


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"01_self_prediction.ipynb", "02_patching_one_pair.ipynb",
                                           "03_probes.ipynb", "04_interventions.ipynb", "05_battery.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_parses_and_imports_exist(path):
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code"
    imported = 0
    for src in code:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("innerprobe"):
                mod = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(mod, alias.name), f"{path.name}: {node.module} has no {alias.name}"
                    imported += 1
    assert imported > 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_sized_by_one_parameter_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), f"{path.name} has outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "".join(params[0]["source"]).startswith("N = ")
    later = "\n".join("".join(c["source"]) for c in code if c is not params[0])
    assert "N" in {n.id for n in ast.walk(ast.parse(later)) if isinstance(n, ast.Name)}


@pytest.mark.slow
@pytest.mark.integration
@requires_smollm2
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    # The kernel inherits this process's environment; monkeypatch restores it afterwards.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    log.info("%s executed in %.1f s", path.name, time.perf_counter() - start)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(c.outputs for c in nb.cells if c.cell_type == "code")
