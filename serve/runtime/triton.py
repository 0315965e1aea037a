"""The runner behind the Python-backend generator of a Triton repository (``export/triton_model.py``):
the backend and precision written into the repository, ``auto`` measured on the serving machine at load (in
process: Triton's Python backend cannot start child interpreters) and cached beside the model file.

    runner, convert = open_for_triton("repo/generator/1/model.onnx", "openvino", "int8", "uint8", batch_size=64)
    images = convert(runner.infer(z))   # uint8 [n, H, W, C], the bytes `ganforge sample` writes
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ganforge.errors import UserError
from ganforge.images import to_uint8_nhwc

from .auto import AUTO, AutoConfig, choose
from .runners import Runner, open_runner

OUTPUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "uint8": to_uint8_nhwc,  # NHWC bytes, as `ganforge sample` writes them
    "float": lambda images: np.asarray(images, dtype=np.float32),  # NCHW in [-1, 1], as the generator file
}


def open_for_triton(model_file: str, backend: str, precision: str, output: str,
                    batch_size: int = 64) -> tuple[Runner, Callable[[np.ndarray], np.ndarray]]:
    """The runner for ``model_file`` and the conversion of its images to the repository's output type."""
    if output not in OUTPUTS:
        raise UserError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if backend == AUTO:
        choice = choose(AutoConfig(model=model_file, batch_size=batch_size, quiet=True, isolated=False))
        print(f"auto: {choice.backend} {choice.precision} ({choice.reason})", flush=True)
        backend, precision, model_file = choice.backend, choice.precision, choice.model_path
    return open_runner(backend, model_file, "cpu", precision), OUTPUTS[output]
