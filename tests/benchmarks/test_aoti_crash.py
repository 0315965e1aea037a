"""The AOTInductor crash narrower: a child that dies is reported with the stage it died in and its signal."""

import json

import pytest

from ganforge.benchmarks import aoti_crash
from ganforge.benchmarks.aoti_crash import MARK, MODELS, STAGES, run_child, script


def test_a_segfault_is_reported_with_its_stage_signal_and_python_stack():
    code = f"print({MARK!r} + 'export', flush=True)\nimport ctypes\nctypes.string_at(0)"
    row = run_child(code, timeout=60)
    assert row["passed"] == ["export"] and row["failed_in"] == "compile"
    assert row["ending"] == "killed by SIGSEGV" and not row["ok"]
    assert any("Segmentation fault" in line for line in row["stderr_tail"])  # faulthandler's report


def test_an_error_exit_is_not_ok_even_after_every_marker():
    code = "".join(f"print({MARK!r} + {stage!r})\n" for stage in STAGES) + "raise SystemExit(3)"
    row = run_child(code, timeout=60)
    assert row["failed_in"] is None and row["ending"] == "exit 3" and not row["ok"]


@pytest.mark.parametrize("model", MODELS)
def test_every_variant_is_valid_python(model, tmp_path):
    compile(script(model, "cuda", True, str(tmp_path)), model, "exec")


@pytest.mark.slow
def test_the_smallest_variant_passes_every_stage_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "aoti_crash.json"
    assert aoti_crash.main(["--device", "cpu", "--variants", "linear", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["passed"] for r in report["rows"]] == [list(STAGES)] * 2 and report["smallest_failing"] is None
