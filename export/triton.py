"""A Triton Inference Server model repository for an exported generator (also what KServe's Triton runtime
loads from a storage URI).

    REPO/generator/config.pbtxt        the generator: z FP32 [z_dim] -> images, dynamic batching, on one of
    REPO/generator/1/model.onnx          onnxruntime (the NGC container's onnxruntime_onnx), openvino (its OpenVINO
                                         backend), python (ganforge's own Runner on the Python backend, any backend
                                         and precision ganforge runs; the only one the pip-installed server has),
                                         or model.plan: a TensorRT engine from `ganforge build-engine`
    REPO/seed_to_latent/config.pbtxt   Python backend: seed INT64 [1] -> z, by ganforge's seed contract
    REPO/seed_to_latent/1/model.py
    REPO/ganforge/config.pbtxt         ensemble: seed -> seed_to_latent -> generator -> images

So a seed gives the same image on Triton as on `ganforge serve` and `ganforge sample` (same backend and
precision; the python generator's ``images_uint8`` are the very bytes `ganforge sample` writes). Every config.pbtxt
is parsed into Triton's own ModelConfig protobuf before it is written. The Python-backend models find their
packages through a ``python_path`` parameter (the exporting interpreter's site-packages by default), or in an
execution environment (``EXECUTION_ENV_PATH``) where the server runs elsewhere.

    write_repository(TritonConfig(model="g.onnx", out="repo", generator="python", runner="openvino:int8"))
"""

from __future__ import annotations

import json
import os
import shutil
import site
from dataclasses import dataclass, field
from pathlib import Path

from ganforge.errors import UserError
from ganforge.files import atomic_write_bytes

from .metadata import read_metadata, write_checksum

KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".engine": ("tensorrt_plan", "model.plan"),
             ".plan": ("tensorrt_plan", "model.plan")}
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # onnx.TensorProto elem types
ENSEMBLE = "ganforge"
SEED_MODEL = "seed_to_latent"
GENERATORS = ("onnxruntime", "openvino", "python")  # the generator's Triton backend for an ONNX file
RUNNERS = ("auto", "onnxruntime", "openvino")  # ganforge backends that load the repository's ONNX file
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
OUTPUTS = {"uint8": ("images_uint8", "TYPE_UINT8"), "float": ("images", None)}  # None: the file's output type
MODEL_SOURCE = Path(__file__).parent / "triton_model.py"  # every Python-backend model's model.py (role: a parameter)


def default_python_path() -> str:
    """The site-packages of this interpreter: where the Python-backend models find NumPy and ganforge when the
    server runs on this machine with this Python version."""
    return os.pathsep.join(p for p in site.getsitepackages() if Path(p).is_dir())

@dataclass(frozen=True)
class TritonConfig:
    model: str  # an exported .onnx file, or a TensorRT engine (.engine / .plan)
    out: str  # the repository folder
    max_batch: int = 64
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "cpu"  # instance_group kind: cpu or gpu
    seeds: bool = True  # add seed_to_latent and the ensemble
    generator: str = "onnxruntime"  # the generator's Triton backend for an ONNX file (GENERATORS)
    runner: str = "auto"  # python generator: ganforge BACKEND[:PRECISION], or auto (measured on the server at load)
    output: str = "uint8"  # python generator: uint8 (images_uint8, NHWC) or float (images, NCHW)
    python_path: str = field(default_factory=default_python_path)  # site folders for the Python-backend models

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"--instance-kind must be cpu or gpu, got {self.kind!r}")
        if self.max_batch < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise UserError("--max-batch and --instances must be positive, --max-queue-delay-us non-negative")
        if self.generator not in GENERATORS:
            raise UserError(f"--triton-backend must be one of {', '.join(GENERATORS)}, got {self.generator!r}")
        if self.output not in OUTPUTS:
            raise UserError(f"--output-type must be uint8 or float, got {self.output!r}")
        backend, _, precision = self.runner.partition(":")
        if backend not in RUNNERS or (precision and (backend == "auto" or precision not in PRECISIONS)):
            raise UserError(f"--runner must be auto or BACKEND[:PRECISION] with BACKEND one of "
                            f"{', '.join(RUNNERS[1:])} and PRECISION one of {', '.join(PRECISIONS)}, "
                            f"got {self.runner!r}")
        if self.generator != "python" and (self.runner != "auto" or self.output != "uint8"):
            raise UserError("--runner and --output-type apply to --triton-backend python only")


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two from 8 up to max_batch, and max_batch itself: few shapes for the backend to tune."""
    sizes = [b for b in (8, 16, 32, 64, 128, 256, 512, 1024) if b < max_batch]
    return [*sizes, max_batch]


def write_repository(config: TritonConfig) -> Path:
    """Write (or replace) the repository; returns its folder."""
    model = Path(config.model)
    if model.suffix not in PLATFORMS:
        raise UserError(f"{model}: Triton export takes an exported .onnx file or a TensorRT .engine/.plan")
    metadata = read_metadata(model)  # a ganforge export with a matching checksum, or one clear line
    shape = json.loads(metadata["output_shape"])
    if metadata.get("kind") == "points" or len(shape) != 3:
        raise UserError(f"{model} is a 2D (points) generator: the Triton repository serves image generators")
    platform, file_name = PLATFORMS[model.suffix]
    if platform == "tensorrt_plan" and config.kind != "gpu":
        raise UserError("a TensorRT plan runs on NVIDIA GPUs only: use --instance-kind gpu (or export ONNX for CPU)")
    if platform == "tensorrt_plan" and config.generator != "onnxruntime":
        raise UserError("--triton-backend applies to ONNX files: a TensorRT engine is served by tensorrt_plan")
    max_batch = int(metadata.get("max_batch", config.max_batch))
    if config.max_batch > max_batch:
        raise UserError(f"--max-batch {config.max_batch} exceeds the {max_batch} that {model.name} was exported for")
    z_dim = int(metadata["z_dim"])
    in_type, out_type = _io_types(model)
    output = generator_output(config, shape, out_type)
    repo = Path(config.out)
    texts = {"generator": generator_config(config, platform, z_dim, in_type, output)}
    if config.seeds:
        generator = json.loads(metadata.get("generator_config", "{}"))
        groups = int(generator.get("class_groups", 1)) if generator.get("class_prior") else 0
        texts[SEED_MODEL] = seed_config(config, z_dim, generator)
        texts[ENSEMBLE] = ensemble_config(config, output, groups)
    checked = _check_configs(texts)
    for name, text in texts.items():
        (repo / name / "1").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(repo / name / "config.pbtxt", text)
    target = repo / "generator" / "1" / file_name
    if not (target.exists() and target.samefile(model)):
        shutil.copyfile(model, target)
        write_checksum(target)
    python_models = (["generator"] if config.generator == "python" else []) + ([SEED_MODEL] if config.seeds else [])
    for name in python_models:
        atomic_write_bytes(repo / name / "1" / "model.py", MODEL_SOURCE.read_text())
    if config.generator != "python":
        (repo / "generator" / "1" / "model.py").unlink(missing_ok=True)  # left by an earlier python export
    if not checked:
        print("note: tritonclient[grpc] is not installed, so the configs were not parsed against Triton's schema")
    return repo


def _check_configs(texts: dict[str, str]) -> bool:
    """Parse every config as Triton would (a config it refuses is an error here, not at deployment); False
    where Triton's schema is not installed."""
    try:
        from tritonclient.grpc import model_config_pb2  # noqa: F401
    except Exception:  # tritonclient without its grpc extra raises RuntimeError
        return False
    for text in texts.values():
        parse_config(text)
    return True


def _io_types(model: Path) -> tuple[str, str]:
    """The Triton data types of the file's z input and images output (ONNX: read from the graph)."""
    if model.suffix != ".onnx":
        return "TYPE_FP32", "TYPE_FP32"  # ganforge engines keep float32 bindings
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    kinds = [ONNX_TYPES.get(t.type.tensor_type.elem_type) for t in (graph.input[0], graph.output[0])]
    if None in kinds:
        raise UserError(f"{model}: input/output types other than float32/float16 are not supported for Triton")
    return kinds[0], kinds[1]


def _dims(values) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _batching(config: TritonConfig) -> str:
    return (f"dynamic_batching {{\n  preferred_batch_size: {_dims(preferred_batch_sizes(config.max_batch))}\n"
            f"  max_queue_delay_microseconds: {config.max_queue_delay_us}\n}}\n")


def _instances(config: TritonConfig, kind: str | None = None) -> str:
    return f"instance_group [ {{ count: {config.instances} kind: {kind or KINDS[config.kind]} }} ]\n"


def generator_output(config: TritonConfig, shape: list[int], out_type: str) -> tuple[str, str, list[int]]:
    """(name, Triton type, dims) of the generator's output: the file's float images, or the python generator's
    uint8 NHWC bytes."""
    if config.generator == "python" and config.output == "uint8":
        name, kind = OUTPUTS["uint8"]
        return name, kind, [shape[1], shape[2], shape[0]]
    return "images", out_type, shape


def _parameters(values: dict[str, str]) -> str:
    return "".join(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
                   for key, value in values.items())


def generator_config(config: TritonConfig, platform: str, z_dim: int, in_type: str,
                     output: tuple[str, str, list[int]]) -> str:
    name, out_type, dims = output
    if platform == "onnxruntime_onnx" and config.generator == "python":
        backend, _, precision = config.runner.partition(":")
        runtime = 'backend: "python"\n' + _parameters(
            {"role": "generator", "model_file": "model.onnx", "backend": backend, "precision": precision or "fp32",
             "output": config.output, "python_path": config.python_path})
    elif platform == "onnxruntime_onnx" and config.generator == "openvino":
        runtime = 'backend: "openvino"\ndefault_model_filename: "model.onnx"\n'
    else:
        runtime = f'platform: "{platform}"\n'
    return (f'name: "generator"\n{runtime}max_batch_size: {config.max_batch}\n'
            f'input [ {{ name: "z" data_type: {in_type} dims: {_dims([z_dim])} }} ]\n'
            f'output [ {{ name: "{name}" data_type: {out_type} dims: {_dims(dims)} }} ]\n'
            + _batching(config) + _instances(config, "KIND_CPU" if config.generator == "python" else None))


def _seed_inputs(groups: int) -> str:
    """seed, and the latent controls as optional inputs (one value per seed): truncation psi, and for conditional
    generators the class of each class group."""
    inputs = ['{ name: "seed" data_type: TYPE_INT64 dims: [ 1 ] }',
              '{ name: "truncation" data_type: TYPE_FP32 dims: [ 1 ] optional: true }']
    if groups:
        inputs.append(f'{{ name: "class" data_type: TYPE_INT64 dims: [ {groups} ] optional: true }}')
    return "input [ " + ", ".join(inputs) + " ]\n"


def seed_config(config: TritonConfig, z_dim: int, generator: dict) -> str:
    classes = {"class_prior": json.dumps(generator["class_prior"]),
               "class_groups": str(generator.get("class_groups", 1))} if generator.get("class_prior") else {}
    return (f'name: "{SEED_MODEL}"\nbackend: "python"\nmax_batch_size: {config.max_batch}\n'
            + _seed_inputs(len(classes) and int(classes["class_groups"]))
            + f'output [ {{ name: "z" data_type: TYPE_FP32 dims: {_dims([z_dim])} }} ]\n'
            + _parameters({"role": SEED_MODEL, "z_dim": str(z_dim), "python_path": config.python_path, **classes})
            + _batching(config) + _instances(config, "KIND_CPU"))


def ensemble_config(config: TritonConfig, output: tuple[str, str, list[int]], groups: int = 0) -> str:
    name, out_type, dims = output
    given = ["seed", "truncation"] + (["class"] if groups else [])
    return (f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: {config.max_batch}\n'
            + _seed_inputs(groups)
            + f'output [ {{ name: "{name}" data_type: {out_type} dims: {_dims(dims)} }} ]\n'
            f"ensemble_scheduling {{\n  step [\n    {_step(SEED_MODEL, given, 'z')},\n"
            f"    {_step('generator', ['z'], name)}\n  ]\n}}\n")


def _step(model: str, given: list[str], made: str) -> str:
    inputs = " ".join(f'input_map {{ key: "{name}" value: "{name}" }}' for name in given)
    return (f'{{ model_name: "{model}" model_version: -1 {inputs} '
            f'output_map {{ key: "{made}" value: "{made}" }} }}')


def parse_config(text: str):
    """Parse config.pbtxt text into Triton's ModelConfig protobuf (from tritonclient's gRPC package), or fail."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise UserError(f"internal error: the Triton config does not parse: {error}") from error
