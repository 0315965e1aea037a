"""ganforge's models on Triton's Python backend (Triton runs this file; nothing in ganforge imports it). `ganforge
export --format triton` copies it as model.py into each Python-backend model; its ``role`` parameter says which
model it is:

- ``seed_to_latent``: seed s -> z = numpy PCG64(s).standard_normal(z_dim) as float32 (ganforge/latents.py), the latent
  that `ganforge sample` and `ganforge serve` use for seed s. Needs NumPy 1, or NumPy 2 with torch (see ``_bridge``).
  The optional inputs ``truncation`` (psi per seed) and ``class`` (a conditional generator's class per seed) apply the
  latent controls of `ganforge sample --truncation --class`; they need ganforge importable (``python_path``).
- ``generator``: z -> images through ganforge's own Runner, so whatever backend and precision ganforge runs
  (``auto``: the fastest accurate one on the serving machine, measured once at load and cached beside the model)
  serves on Triton too. The requests of one dynamic batch run as one batch (split at the runner's largest); the
  output is ``images_uint8`` (uint8 NHWC, the bytes `ganforge sample` writes) or ``images`` (float32 NCHW in
  [-1, 1]), named as `ganforge serve` names them. Needs ganforge and its backend's runtime.

The ``python_path`` parameter lists site folders (os.pathsep-separated) that give the backend's interpreter those
packages (the exporting Python's site-packages by default; missing folders are skipped, so the same repository also
runs where the packages are importable already, as in an execution environment).
"""

import json
import os
import site
import sys

import triton_python_backend_utils as pb_utils

HOW = "set the model's python_path parameter or an EXECUTION_ENV_PATH (see ganforge's docs/export.md)"


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
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        for folder in parameters.get("python_path", "").split(os.pathsep):
            if folder and os.path.isdir(folder) and folder not in sys.path:
                site.addsitedir(folder)
        self.role = parameters["role"]
        python = sys.version.split()[0]
        if self.role == "generator":  # ganforge first: it brings NumPy and torch, and is what is missing if they are
            try:
                from ganforge.serve.runtime.triton import open_for_triton
            except ImportError as error:
                raise pb_utils.TritonModelException(
                    f"the generator needs ganforge in Python {python}: {error}; {HOW}") from error
        try:
            import numpy

            self.np = numpy
            self.read, self.tensor = _bridge(numpy)
        except ImportError as error:
            raise pb_utils.TritonModelException(
                f"{self.role} needs NumPy 1, or NumPy 2 and torch, in Python {python}: {error}; {HOW}") from error
        if self.role == "seed_to_latent":
            self.z_dim = int(parameters["z_dim"])
            prior = json.loads(parameters.get("class_prior", "[]"))
            self.classes = (tuple(prior), int(parameters.get("class_groups", 1)))
        else:
            self._open_generator(args, config, parameters, open_for_triton)

    def _open_generator(self, args, config, parameters, open_for_triton):
        self.output_name = config["output"][0]["name"]
        model_file = os.path.join(args["model_repository"], args["model_version"], parameters["model_file"])
        try:
            self.runner, self.convert = open_for_triton(model_file, parameters["backend"], parameters["precision"],
                                                        parameters["output"], int(config["max_batch_size"]))
        except Exception as error:  # a UserError names what is wrong in one line: pass it to Triton's log as it is
            raise pb_utils.TritonModelException(f"generator: {error}") from error
        info = self.runner.info
        print(f"generator: ganforge runner {info.backend} {info.precision} on {info.device}, "
              f"output {parameters['output']}", flush=True)

    def execute(self, requests):
        inputs = [self.read(pb_utils.get_input_tensor_by_name(r, "seed" if self.role == "seed_to_latent" else "z"))
                  for r in requests]
        if self.role == "seed_to_latent":
            return [self._latents(seeds.reshape(-1), request) for seeds, request in zip(inputs, requests)]
        return self._images(inputs)

    def _latents(self, seeds, request):
        np = self.np
        if (seeds < 0).any():
            return self._error(f"seeds must be non-negative, got {int(seeds.min())}")
        psi, chosen = (pb_utils.get_input_tensor_by_name(request, name) for name in ("truncation", "class"))
        if psi is not None or chosen is not None:
            try:
                z = self._controlled(seeds, psi, chosen)
            except Exception as error:  # a psi or class the model cannot take: the reason, as ganforge says it
                return self._error(str(error))
            return pb_utils.InferenceResponse(output_tensors=[self.tensor("z", z)])
        z = np.empty((len(seeds), self.z_dim), dtype=np.float32)
        for i, seed in enumerate(seeds.tolist()):
            z[i] = np.random.default_rng(seed).standard_normal(self.z_dim, dtype=np.float32)
        return pb_utils.InferenceResponse(output_tensors=[self.tensor("z", z)])

    def _controlled(self, seeds, psi, chosen):
        """Each seed's latent under its own truncation and class, by ganforge's seed contract."""
        try:
            from ganforge.serve.runtime.latent_space import LatentSpace
        except ImportError as error:
            raise RuntimeError(f"truncation and class need ganforge in this model's Python: {error}; {HOW}") from error
        space = LatentSpace(self.z_dim, *self.classes)
        psis = self.read(psi).reshape(-1).tolist() if psi is not None else [1.0] * len(seeds)
        classes = self.read(chosen).reshape(len(seeds), -1).tolist() if chosen is not None else [None] * len(seeds)
        rows = [space.latents([seed], space.controls(p, k)) for seed, p, k in zip(seeds.tolist(), psis, classes)]
        return self.np.concatenate(rows)

    def _error(self, message):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))

    def _images(self, latents):
        np = self.np
        try:
            z = np.concatenate(latents).astype(np.float32, copy=False)
            step = self.runner.info.max_batch
            images = np.concatenate([self.convert(self.runner.infer(z[i:i + step])) for i in range(0, len(z), step)])
        except Exception as error:
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))
                    for _ in latents]
        responses, start = [], 0
        for part in latents:
            rows = np.ascontiguousarray(images[start:start + len(part)])
            start += len(part)
            responses.append(pb_utils.InferenceResponse(output_tensors=[self.tensor(self.output_name, rows)]))
        return responses

    def finalize(self):
        if self.role == "generator":
            self.runner.close()
