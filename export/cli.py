"""`ganforge export RUN_DIR|CHECKPOINT --out PATH`."""

from __future__ import annotations

from ganforge.cliutil import Parser

EXAMPLES = """\
  ganforge export runs/00000-digits-dcgan --out g.onnx
  ganforge export runs/00000-digits-dcgan --out g-fp16.onnx --precision fp16
  ganforge export runs/00000-digits-dcgan --out g-int8.onnx --precision int8
  ganforge export runs/00000-digits-dcgan/checkpoints/step-000300.pt --out g.pt2 --max-batch 256
  ganforge export runs/00000-digits-dcgan --checkpoint best --out g-best.onnx   # the best evaluation
"""


def main(argv: list[str]) -> int:
    parser = Parser("export", "Export a trained generator; every export is verified against PyTorch.", EXAMPLES)
    parser.add_argument("source", help="run folder or checkpoint file")
    parser.add_argument("--out", required=True, help="output file: .onnx or .pt2 (AOTInductor)")
    parser.add_argument("--format", choices=("onnx", "aoti"), help="default: from the --out suffix")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                        help="fp16/int8 for ONNX only; inputs and outputs stay float32 (default fp32)")
    parser.add_argument("--max-batch", type=int, default=1024, help="largest batch the file accepts (1024)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--weights", default="ema", choices=("ema", "raw"), help="EMA (default) or raw G")
    parser.add_argument("--device", default="cpu", help="AOTInductor only: compile for cpu (default) or cuda")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    parser.add_argument("--checkpoint", help="run folders: best, latest or step-NNNNNN (default latest)")
    args = parser.parse_args(argv)

    from ganforge.train.checkpoint import find_checkpoint

    from .api import ExportConfig, describe, export

    source = str(find_checkpoint(args.source, args.checkpoint)) if args.checkpoint else args.source
    config = ExportConfig(source=source, out=args.out, format=args.format, precision=args.precision,
                          max_batch=args.max_batch, opset=args.opset, weights=args.weights,
                          verify=not args.no_verify, device=args.device)
    print(describe(export(config)))
    return 0
