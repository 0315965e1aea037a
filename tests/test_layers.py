"""The layers hold, checked by import-linter's contracts in pyproject.toml: a stage imports only the stages upstream
of it and the floor; the floor imports no stage. import-linter reads packages from the file system under their root,
while ganforge's stages live beside `ganforge/` (mapped by `package-dir`), so the check runs on a copy assembled as
the installed package is laid out; a planted backward import must fail it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "export", "serve", "benchmarks")  # ganforge.<stage> is <stage>/ (pyproject's package-dir)
LINT = Path(sys.executable).parent / "lint-imports"
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e .[dev])")


def assemble(folder: Path) -> Path:
    """``folder/ganforge/`` as installed: the floor's modules, and each stage's package inside it."""
    package = folder / "ganforge"
    shutil.copytree(ROOT / "ganforge", package, ignore=shutil.ignore_patterns("__pycache__"))
    for stage in STAGES:
        shutil.copytree(ROOT / stage, package / stage, ignore=shutil.ignore_patterns("__pycache__", "results", "*.sh"))
    return folder


def lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), str(ROOT / "pyproject.toml")], cwd=folder, capture_output=True,
                          text=True, env={"PYTHONPATH": str(folder), "PATH": str(LINT.parent)}, timeout=300)


def test_the_package_dir_mapping_is_the_one_assembled_here():
    tomllib = pytest.importorskip("tomllib")
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert {k: v for k, v in mapping.items() if k != "ganforge"} == {f"ganforge.{s}": s for s in STAGES}


def test_the_layers_hold(tmp_path):
    result = lint(assemble(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("train/planted.py", "from ganforge.serve.runtime.runners import open_runner\n", "stages import upstream only"),
    ("export/planted.py", "import ganforge.benchmarks.bench.run\n", "stages import upstream only"),
    ("files.py", "from ganforge.train import images\n", "the floor imports no stage"),
])
def test_a_planted_backward_import_breaks_its_contract(tmp_path, module, line, contract):
    target = assemble(tmp_path) / "ganforge" / module
    target.write_text((target.read_text() if target.exists() else "") + line)
    result = lint(tmp_path)
    verdicts = [line for line in result.stdout.splitlines() if line.startswith(contract)]
    assert result.returncode != 0 and verdicts and " BROKEN" in verdicts[0], result.stdout + result.stderr
    if contract.startswith("stages"):
        assert "stages import upstream only" in result.stdout and "the floor imports no stage KEPT" in result.stdout
