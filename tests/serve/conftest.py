import pytest

from ganforge.export.api import ExportConfig, export


@pytest.fixture(scope="session")
def onnx_model(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "g.onnx"
    return str(export(ExportConfig(source=str(trained_run), out=str(out), max_batch=256)).path)
