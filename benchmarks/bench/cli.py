"""`ganforge bench RUN_DIR|MODEL --out DIR`."""

from __future__ import annotations

from pathlib import Path

from ganforge.cliutil import Parser, int_list
from ganforge.errors import UserError

EXAMPLES = """\
  ganforge bench runs/00000-digits-dcgan --out bench/
  ganforge bench runs/00000-digits-dcgan --backends auto,torch --precisions fp32 --scenarios offline --out vs/
  ganforge bench runs/00000-digits-dcgan --backends onnxruntime,openvino --precisions fp32,int8 --batch-sizes 1,64 \\
      --out bench-int8/
  ganforge bench g.onnx --backends onnxruntime --scenarios offline,single-stream --min-duration 1 --out bench-ort/
  ganforge bench runs/00000-digits-dcgan --backends onnxruntime --precisions fp32 --truncation 0.7 --out bench-psi/
"""


def main(argv: list[str]) -> int:
    parser = Parser("bench", "Benchmark backends: offline throughput, single-stream latency, server load.",
                    EXAMPLES)
    parser.add_argument("model", help="run folder (exports are made and cached there) or a model file")
    parser.add_argument("--out", required=True, help="folder for bench.json, bench.md and the plots")
    parser.add_argument("--backends", default="all", help="all (auto's choice, then every backend), or a "
                        "comma-separated list; auto = what --backend auto picks here")
    parser.add_argument("--precisions", default="", help="comma-separated: fp32,fp16,int8,bf16 (default: every "
                        "precision this machine runs natively)")
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 8, 64, 256],
                        help="offline scenario: comma-separated batch sizes (default 1,8,64,256)")
    parser.add_argument("--scenarios", default="offline,single-stream,server",
                        help="offline, single-stream, server (in process), server-http (starts `ganforge serve`)")
    parser.add_argument("--min-duration", type=float, default=3.0, help="seconds per measurement (3)")
    parser.add_argument("--server-duration", type=float, default=3.0, help="seconds per offered rate (3)")
    parser.add_argument("--latency-bound-ms", type=float, default=100.0, help="server scenario: the p99 "
                        "latency a rate must stay within to pass; the report gives the highest passing rate "
                        "(default 100)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI", help="truncation psi in (0, 1] "
                        "for the latents and the server scenarios' requests, as sample and serve apply it; the rows "
                        "record it (default 1: off)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from .report import table, write_reports
    from .run import BenchConfig, bench

    split = lambda text: tuple(part.strip() for part in text.split(",") if part.strip())  # noqa: E731
    config = BenchConfig(model=args.model, out=args.out, backends=split(args.backends),
                         precisions=split(args.precisions), batch_sizes=tuple(args.batch_sizes),
                         scenarios=split(args.scenarios), min_duration=args.min_duration,
                         server_duration=args.server_duration, latency_bound_ms=args.latency_bound_ms,
                         device=args.device, truncation=args.truncation)
    report = bench(config, progress=not args.quiet)
    paths = write_reports(report, Path(args.out))
    print(table(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    if not any(row["status"] == "ok" for row in report["results"]):
        raise UserError("every backend failed (see the error column above)")
    return 0
