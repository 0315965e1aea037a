"""ganforge's seed contract on Triton's Python backend: seed s -> z = numpy PCG64(s).standard_normal(z_dim) as
float32 (ganforge/latents.py), the latent that `ganforge sample` and `ganforge serve` use for seed s. Needs
NumPy 1, or NumPy 2 with torch (see ``_bridge``)."""

import json
import os
import site
import sys

import triton_python_backend_utils as pb_utils


def _parameters(args) -> dict:
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def _extend_path(parameters: dict) -> None:
    for folder in parameters.get("python_path", "").split(os.pathsep):
        if folder and os.path.isdir(folder) and folder not in sys.path:
            site.addsitedir(folder)


def _bridge(numpy):
    """(read input, make output) for this NumPy: the backend's own NumPy bridge was built for NumPy 1, and under
    NumPy 2 it reads inputs wrong (every seed as the first) and hands back empty outputs. DLPack works under both;
    outputs go through torch's DLPack, since the backend logs a spurious capsule error for every NumPy one."""
    if int(numpy.__version__.split(".")[0]) < 2:
        return (lambda tensor: tensor.as_numpy()), pb_utils.Tensor
    import torch

    return numpy.from_dlpack, lambda name, array: pb_utils.Tensor.from_dlpack(name, torch.from_numpy(array))


class TritonPythonModel:
    def initialize(self, args):
        parameters = _parameters(args)
        _extend_path(parameters)
        try:
            import numpy

            self.read, self.tensor = _bridge(numpy)
        except ImportError as error:
            raise pb_utils.TritonModelException(
                f"seed_to_latent needs NumPy 1, or NumPy 2 and torch, in Python {sys.version.split()[0]}: {error}; "
                "set the model's python_path parameter or an EXECUTION_ENV_PATH (see ganforge's docs/export.md)"
            ) from error
        self.np = numpy
        self.z_dim = int(parameters["z_dim"])

    def execute(self, requests):
        np, responses = self.np, []
        for request in requests:
            seeds = self.read(pb_utils.get_input_tensor_by_name(request, "seed")).reshape(-1)
            if (seeds < 0).any():
                error = pb_utils.TritonError(f"seeds must be non-negative, got {int(seeds.min())}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            z = np.empty((len(seeds), self.z_dim), dtype=np.float32)
            for i, seed in enumerate(seeds.tolist()):
                z[i] = np.random.default_rng(seed).standard_normal(self.z_dim, dtype=np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[self.tensor("z", z)]))
        return responses
