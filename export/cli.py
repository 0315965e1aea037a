"""`ganforge export RUN_DIR|CHECKPOINT --out PATH`."""

from __future__ import annotations

from ganforge.cliutil import Parser
from ganforge.errors import UserError

EXAMPLES = """\
  ganforge export runs/00000-digits-dcgan --out g.onnx
  ganforge export runs/00000-digits-dcgan --out g-fp16.onnx --precision fp16
  ganforge export runs/00000-digits-dcgan --out g-int8.onnx --precision int8
  ganforge export runs/00000-digits-dcgan/checkpoints/step-000300.pt --out g.pt2 --max-batch 256
  ganforge export runs/00000-digits-dcgan --checkpoint best --out g-best.onnx   # the best evaluation
  ganforge export runs/00000-digits-dcgan --format triton --out repo/           # Triton model repository
  ganforge export runs/00000-digits-dcgan --format triton --triton-backend python --runner openvino:int8 --out repo/
  ganforge export g.engine --format triton --instance-kind gpu --instances 2 --out repo-trt/
"""
TRITON_ONLY = ("instances", "instance_kind", "max_queue_delay_us", "no_seed_model", "triton_backend", "runner",
               "output_type", "python_path")


def main(argv: list[str]) -> int:
    parser = Parser("export", "Export a trained generator; every export is verified against PyTorch.", EXAMPLES)
    parser.add_argument("source", help="run folder or checkpoint file")
    parser.add_argument("--out", required=True, help="output file: .onnx or .pt2 (AOTInductor); a folder for triton")
    parser.add_argument("--format", choices=("onnx", "aoti", "triton"), help="default: from the --out suffix")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                        help="fp16/int8 for ONNX only; inputs and outputs stay float32 (default fp32)")
    parser.add_argument("--max-batch", type=int, help="largest batch the file accepts (1024; triton: 64)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--weights", default="ema", choices=("ema", "raw"), help="EMA (default) or raw G")
    parser.add_argument("--device", default="cpu", help="AOTInductor only: compile for cpu (default) or cuda")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    parser.add_argument("--checkpoint", help="run folders: best, latest or step-NNNNNN (default latest)")
    triton = parser.add_argument_group("triton (with --format triton)")
    triton.add_argument("--instances", type=int, help="model instances (instance_group count, default 1)")
    triton.add_argument("--instance-kind", choices=("cpu", "gpu"), help="KIND_CPU (default) or KIND_GPU")
    triton.add_argument("--max-queue-delay-us", type=int, help="dynamic batching delay (default 2000)")
    triton.add_argument("--no-seed-model", action="store_true", help="only the generator (z in), no seed ensemble")
    triton.add_argument("--triton-backend", choices=("onnxruntime", "openvino", "python"),
                        help="the generator's Triton backend: onnxruntime (default) or openvino (NGC container), or "
                             "python: ganforge's own runner (the pip-installed server has only this one)")
    triton.add_argument("--runner", help="python backend: ganforge BACKEND[:PRECISION] (onnxruntime, openvino; "
                                         "e.g. openvino:int8) or auto (default: measured on the server at load)")
    triton.add_argument("--output-type", choices=("uint8", "float"),
                        help="python backend: uint8 (default: images_uint8 NHWC, the bytes `sample` writes) or float")
    triton.add_argument("--python-path", help="python backend: site folders (separated by ':') where the server's "
                                              "Python finds numpy and ganforge (default: this Python's site-packages)")
    args = parser.parse_args(argv)
    if args.format == "triton":
        return _triton(args)
    given = [f"--{name.replace('_', '-')}" for name in TRITON_ONLY if getattr(args, name) not in (None, False)]
    if given:
        raise UserError(f"{', '.join(given)} apply to --format triton only")

    from .api import ExportConfig, describe, export
    from .model_source import resolve_model

    source = resolve_model(args.source, args.checkpoint)
    if not source.is_checkpoint:
        raise UserError(f"{args.source}: export needs a run folder or checkpoint (.pt), not an exported file")
    config = ExportConfig(source=str(source.file), out=args.out, format=args.format, precision=args.precision,
                          max_batch=1024 if args.max_batch is None else args.max_batch, opset=args.opset,
                          weights=args.weights, verify=not args.no_verify, device=args.device)
    print(describe(export(config)))
    return 0


def _triton(args) -> int:
    """A Triton repository from a run folder or checkpoint (exported to ONNX inside it) or an exported file."""
    from pathlib import Path

    from .model_source import resolve_model
    from .triton import TritonConfig, write_repository

    default = lambda value, fallback: fallback if value is None else value  # noqa: E731
    given = {"python_path": args.python_path} if args.python_path is not None else {}
    config = TritonConfig(model=args.source, out=args.out, max_batch=default(args.max_batch, 64),
                          max_queue_delay_us=default(args.max_queue_delay_us, 2000),
                          instances=default(args.instances, 1), kind=args.instance_kind or "cpu",
                          seeds=not args.no_seed_model, generator=args.triton_backend or "onnxruntime",
                          runner=args.runner or "auto", output=args.output_type or "uint8", **given)
    source = resolve_model(args.source, args.checkpoint)
    if source.is_checkpoint:
        from .api import ExportConfig, describe, export

        target = Path(args.out) / "generator" / "1" / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        print(describe(export(ExportConfig(source=str(source.file), out=str(target), format="onnx",
                                           precision=args.precision, max_batch=config.max_batch,
                                           opset=args.opset, weights=args.weights, verify=not args.no_verify))))
        config = TritonConfig(**{**config.__dict__, "model": str(target)})
    repo = write_repository(config)
    print(f"Triton model repository -> {repo}: models generator" + (", seed_to_latent, ganforge (seed in)"
                                                                     if config.seeds else ""))
    print(f"  tritonserver --model-repository {repo.resolve()}")
    return 0
