"""`ganforge build-engine MODEL.onnx --out G.engine` (needs TensorRT and an NVIDIA GPU)."""

from __future__ import annotations

from pathlib import Path

from ganforge.cliutil import Parser

EXAMPLES = """\
  ganforge build-engine g.onnx --out g.engine --opt-batch 64 --max-batch 256
  ganforge build-engine g.onnx --out g-fp16.engine --fp16 --timing-cache trt.cache
"""


def main(argv: list[str]) -> int:
    parser = Parser("build-engine", "Build a TensorRT engine (+ a .json sidecar) from a ganforge ONNX.", EXAMPLES)
    parser.add_argument("onnx", help="a model written by `ganforge export`")
    parser.add_argument("--out", required=True, help="engine file to write")
    parser.add_argument("--min-batch", type=int, default=1, help="smallest batch the engine accepts (1)")
    parser.add_argument("--opt-batch", type=int, default=64, help="the batch TensorRT tunes its kernels for (64)")
    parser.add_argument("--max-batch", type=int, default=256, help="largest batch the engine accepts (256)")
    parser.add_argument("--fp16", action="store_true", help="fp16 kernels (TensorRT 11: via an fp16 ONNX)")
    parser.add_argument("--workspace-mib", type=int, default=4096,
                        help="GPU memory TensorRT may use while building, in MiB (4096)")
    parser.add_argument("--timing-cache", type=Path, help="reuse and update this timing cache file")
    args = parser.parse_args(argv)

    from .tensorrt import BatchProfile, build_engine

    profile = BatchProfile(args.min_batch, args.opt_batch, args.max_batch)
    info = build_engine(Path(args.onnx), Path(args.out), profile, args.fp16, args.workspace_mib, args.timing_cache)
    print(f"built {args.out} ({info.precision}, batch {info.min_batch}/{info.opt_batch}/{info.max_batch}) for "
          f"{info.gpu_name} with TensorRT {info.tensorrt_version} in {info.build_seconds:.1f}s")
    return 0
