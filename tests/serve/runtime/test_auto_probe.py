"""--backend auto measures in child processes: a candidate that kills its process is a row, not the end."""

import os
import shutil
import textwrap
from pathlib import Path

from ganforge.serve.runtime.auto import AutoConfig, candidates, choose

CRASH = textwrap.dedent("""
    import os, signal
    import ganforge.serve.runtime.auto_probe as probe

    measure = probe.measure_pair

    def crashing(job, name, precision, reference):  # as a runtime's native code would, mid-candidate
        if (name, precision) == {crashes!r}:
            os.kill(os.getpid(), signal.SIGSEGV)
        return measure(job, name, precision, reference)

    probe.measure_pair = crashing
""")


def test_a_candidate_that_crashes_the_process_costs_its_row_only(onnx_copy, tmp_path, monkeypatch):
    backends = ("openvino", "onnxruntime")
    first, second = candidates(onnx_copy, "cpu", ("fp32",), backends)  # the first dies: a new process goes on
    (tmp_path / "sitecustomize.py").write_text(CRASH.format(crashes=first))  # run by every Python on this path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    choice = choose(AutoConfig(model=str(onnx_copy), backends=backends, precisions=("fp32",), seconds=0.2,
                               quiet=True))
    rows = {(row["backend"], row["precision"]): row for row in choice.table}
    assert list(rows) == [first, second]
    assert rows[first]["error"] == "crashed the process (killed by SIGSEGV)"
    assert rows[second]["images_per_second"] > 0 and (choice.backend, choice.precision) == second


def test_a_checkpoint_outside_a_run_exports_into_the_cache_folder(trained_run, tmp_path):
    checkpoint = tmp_path / "g.pt"  # no run folder around it: exports go to the cache (sample's --out)
    shutil.copy(trained_run / "checkpoints" / "latest.pt", checkpoint)
    choice = choose(AutoConfig(model=str(checkpoint), backends=("onnxruntime",), precisions=("fp32",), seconds=0.2,
                               cache=tmp_path / "out", quiet=True))
    assert Path(choice.model_path).parent == tmp_path / "out" / "exports"
