import json
import shutil
from pathlib import Path

import pytest

from ganforge.errors import UserError
from ganforge.export.model_source import ModelSource, resolve_model


def test_a_run_folder_resolves_to_its_checkpoint_and_exports_folder(trained_run):
    run = Path(trained_run)
    model = resolve_model(run)
    assert (model.kind, model.run, model.given) == ("checkpoint", run, run)
    assert model.file == run / "checkpoints" / "latest.pt" and model.cache_folder == run / "exports"
    assert model.cache_file("auto.json") == run / "exports" / "auto.json"
    step = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    assert resolve_model(run, checkpoint=step.stem).file == step
    assert model.z_dim == 8 and model.generator_config["z_dim"] == 8
    assert model.metadata["checkpoint_sha256"] == model.sha256  # what an export of it records


def test_a_lone_checkpoint_caches_beside_itself_or_where_told(trained_run, tmp_path):
    lone = tmp_path / "g.pt"
    shutil.copy(Path(trained_run) / "checkpoints" / "latest.pt", lone)
    assert resolve_model(lone).cache_folder == tmp_path / "exports" and resolve_model(lone).run is None
    assert resolve_model(lone, cache=tmp_path / "out").cache_folder == tmp_path / "out" / "exports"
    inside = resolve_model(Path(trained_run) / "checkpoints" / "latest.pt")  # a run's own checkpoint: the run's cache
    assert inside.run == Path(trained_run) and inside.cache_folder == Path(trained_run) / "exports"


def test_an_exported_file_carries_its_metadata_and_caches_beside_itself(onnx_model):
    model = resolve_model(onnx_model)
    assert (model.kind, model.file, model.run) == ("onnx", Path(onnx_model), None)
    assert model.cache_file("auto.json") == Path(onnx_model + ".auto.json")
    assert model.z_dim == 8 and json.loads(model.metadata["output_shape"]) == [1, 16, 16]
    assert ModelSource.from_dict(json.loads(json.dumps(model.to_dict()))) == model  # as a child process gets it
    assert resolve_model(model) is model


@pytest.mark.parametrize("name, checkpoint, message", [
    ("missing", None, "no such file or folder"),
    ("notes.txt", None, "not a model"),
    ("g.onnx", "best", "picks a checkpoint of a run folder"),
])
def test_what_is_no_model_is_one_clear_error(tmp_path, name, checkpoint, message):
    if name != "missing":
        (tmp_path / name).write_text("x")
    with pytest.raises(UserError, match=message):
        resolve_model(tmp_path / name, checkpoint)


def test_an_unknown_checkpoint_name_says_what_the_run_holds(trained_run):
    with pytest.raises(UserError, match="no checkpoint best.pt"):
        resolve_model(trained_run, checkpoint="best")
