"""PyTorch generator -> ONNX (fp32, dynamic batch), and its fp16 and int8 variants.

Contract: input ``z`` float32 [batch, z_dim], output ``images`` float32 [batch, *output_shape]; fp16 and
int8 models keep float32 inputs and outputs, so every consumer feeds and reads the same tensors.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

INPUT_NAME, OUTPUT_NAME = "z", "images"


def export_onnx(generator: torch.nn.Module, z_dim: int, path: Path, max_batch: int, opset: int | None) -> None:
    """torch.onnx's dynamo exporter with a dynamic batch of 1..max_batch, into one self-contained file."""
    generator = generator.eval()  # BatchNorm must use its running statistics, not the batch's
    example = torch.randn(2, z_dim)
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    with warnings.catch_warnings(), _quiet_loggers():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(generator, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                                    opset_version=opset, verbose=False)
    program.save(str(path), external_data=False)


class _quiet_loggers:
    """The exporter logs its progress at INFO level: keep the user's terminal for ganforge's own lines."""

    NAMES = ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")

    def __enter__(self):
        self.levels = {name: logging.getLogger(name).level for name in self.NAMES}
        for name in self.NAMES:
            logging.getLogger(name).setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


def latent_class_nodes(graph) -> list[str]:
    """The nodes of a conditional generator's class cut (``LatentClasses``): each Greater, what feeds it (the Slice
    of z0 .. z(G-1) and its Unsqueeze), and what makes its result one-hots (Cast, Slice, Sub, Reshape) up to the
    Concat with z. Reduced-precision conversions leave them alone: z0 rounded to fp16 or to an int8 step would land
    some seeds in another class. Found by structure, so it holds after optimisers rename nodes; empty for every
    other model."""
    producers = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    picked: dict[str, object] = {}
    for greater in (node for node in graph.node if node.op_type == "Greater"):
        upstream, downstream = [greater], [greater]
        while upstream:
            node = upstream.pop()
            picked[node.name] = node
            upstream += [producers[name] for name in node.input if name in producers]
        while downstream:
            node = downstream.pop()
            picked[node.name] = node
            downstream += [c for name in node.output for c in consumers.get(name, []) if c.op_type != "Concat"]
    return list(picked)


def convert_fp16(source: Path, target: Path) -> None:
    """fp16 weights and arithmetic inside, float32 at the edges (keep_io_types). A conditional generator's class
    (``LatentClasses``: z0 compared with the class edges) stays fp32, so z0 is cut where the fp32 model cuts it."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    fp32_nodes = latent_class_nodes(model.graph)
    with warnings.catch_warnings():  # it warns for every weight below fp16's range that it rounds
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=fp32_nodes)
    onnx.save(model, str(target))


class _LatentReader:
    """Calibration data for static quantisation: batches of standard-normal latents."""

    def __init__(self, z_dim: int, batches: int = 8, batch_size: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self._items = iter([{INPUT_NAME: rng.standard_normal((batch_size, z_dim), dtype=np.float32)}
                            for _ in range(batches)])

    def get_next(self):
        return next(self._items, None)


def convert_int8(source: Path, target: Path, z_dim: int) -> None:
    """onnxruntime static quantisation in QDQ form: int8 weights (per channel), uint8 activations, calibrated
    with MinMax on generated latents. The float32 input and output stay float32, and so does a conditional
    generator's class cut (``latent_class_nodes``)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.name + ".prep.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        import onnx

        graph = onnx.load(str(prepared)).graph
        excluded = latent_class_nodes(graph)
        one_hot = {name for node in graph.node if node.name in excluded for name in node.output}
        # and the Concat of z with the one-hot: quantizing its input would quantize the z that the cut reads too
        excluded += [node.name for node in graph.node if node.op_type == "Concat" and one_hot & set(node.input)]
        quantize_static(str(prepared), str(target), _LatentReader(z_dim), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        nodes_to_exclude=excluded)
    finally:
        prepared.unlink(missing_ok=True)


def inference_threads() -> int | None:
    """Threads per inference session: $GANFORGE_THREADS (set by `ganforge serve --threads`, or by `--workers` to
    split the cores between its processes), else None (the runtime's default: every core)."""
    import os

    value = os.environ.get("GANFORGE_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_inference_threads(threads: int) -> None:
    """Every runner this process opens from now on computes on ``threads`` threads: onnxruntime and OpenVINO read
    $GANFORGE_THREADS when they open a model, torch's thread pool is set now (and so is the variable, for child
    processes)."""
    import os

    import torch

    os.environ["GANFORGE_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def onnx_session(path: str | Path, providers: list | None = None, threads: int | None = None,
                 spinning: bool = True):
    """``spinning=False``: the session's threads sleep between calls instead of spinning (onnxruntime spins by
    default), so that sessions computing beside each other share the cores instead of burning them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = threads or inference_threads()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
