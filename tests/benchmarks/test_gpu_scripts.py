"""The GPU machine scripts: valid shell, and the link farm that stands in for installing ganforge there mirrors
pyproject.toml's package-dir mapping (a package added there but not here would be missing on the GPU machine)."""

import re
import subprocess
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).parents[2]
SCRIPTS = sorted((REPO / "benchmarks" / "gpu").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_the_link_farm_mirrors_the_package_dir_mapping():
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top_level = {folder for name, folder in mapping.items() if name.count(".") == 1}
    linked = re.search(r"for p in ([\w ]+); do ln -s", (REPO / "benchmarks" / "gpu" / "run.sh").read_text())
    assert linked and set(linked.group(1).split()) == top_level
    assert all(folder == name.split(".")[-1] for name, folder in mapping.items() if name.count(".") == 1)
