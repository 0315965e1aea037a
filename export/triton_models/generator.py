"""ganforge's generator on Triton's Python backend: z -> images through ganforge's own Runner, so whatever backend
and precision ganforge runs (``auto``: the fastest accurate one on the serving machine, measured once at load and
cached beside the model) serves on Triton too. The requests of one dynamic batch run as one batch (split at the
runner's largest); the output is ``images_uint8`` (uint8 NHWC, the bytes `ganforge sample` writes) or ``images``
(float32 NCHW in [-1, 1]), named as `ganforge serve` names them. Needs ganforge and its backend's runtime
importable (the ``python_path`` parameter, or an execution environment)."""

import json
import os
import site
import sys

import triton_python_backend_utils as pb_utils


def _parameters(config: dict) -> dict:
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
        config = json.loads(args["model_config"])
        parameters = _parameters(config)
        _extend_path(parameters)
        self.output_name = config["output"][0]["name"]
        try:
            import numpy

            from ganforge.serve.runtime.triton import open_for_triton
        except ImportError as error:
            raise pb_utils.TritonModelException(
                f"the generator needs ganforge in Python {sys.version.split()[0]}: {error}; set the model's "
                "python_path parameter or an EXECUTION_ENV_PATH (see ganforge's docs/export.md)") from error
        self.np = numpy
        self.read, self.tensor = _bridge(numpy)
        folder = os.path.join(args["model_repository"], args["model_version"])
        try:
            self.runner, self.convert = open_for_triton(os.path.join(folder, parameters["model_file"]),
                                                        parameters["backend"], parameters["precision"],
                                                        parameters["output"], int(config["max_batch_size"]))
        except Exception as error:  # a UserError names what is wrong in one line: pass it to Triton's log as it is
            raise pb_utils.TritonModelException(f"generator: {error}") from error
        info = self.runner.info
        print(f"generator: ganforge runner {info.backend} {info.precision} on {info.device}, "
              f"output {parameters['output']}", flush=True)

    def execute(self, requests):
        np = self.np
        latents = [self.read(pb_utils.get_input_tensor_by_name(request, "z")) for request in requests]
        try:
            z = np.concatenate(latents).astype(np.float32, copy=False)
            step = self.runner.info.max_batch
            images = np.concatenate([self.convert(self.runner.infer(z[i:i + step])) for i in range(0, len(z), step)])
        except Exception as error:
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))
                    for _ in requests]
        responses, start = [], 0
        for part in latents:
            rows = np.ascontiguousarray(images[start:start + len(part)])
            start += len(part)
            tensor = self.tensor(self.output_name, rows)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def finalize(self):
        self.runner.close()
