"""`ganforge backends [MODEL]`: every backend and whether it can run here; with a model, the table that
`--backend auto` chose from (measured once, then read from the cache)."""

from __future__ import annotations

from ganforge.cliutil import Parser

EXAMPLES = """\
  ganforge backends
  ganforge backends runs/00000-digits-dcgan                 # measured table at batch 64, and auto's choice
  ganforge backends g.onnx --batch-size 1 --min-psnr 50 --refresh
"""


def main(argv: list[str]) -> int:
    parser = Parser("backends", "List inference backends, or measure them on a model (what --backend auto does).",
                    EXAMPLES)
    parser.add_argument("model", nargs="?", help="run folder, checkpoint or model file to measure the backends on")
    parser.add_argument("--batch-size", type=int, default=64, help="the batch size the choice is timed at (64)")
    parser.add_argument("--min-psnr", type=float, default=40.0, help="accuracy bound in dB against fp32 (40)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--refresh", action="store_true", help="measure again even if a choice is cached")
    args = parser.parse_args(argv)
    if args.model is None:
        from .runners import backends

        for name, backend in backends().items():
            why_not = backend.availability()
            state = "available" if why_not is None else f"not available: {why_not}"
            print(f"{name:<15} loads {backend.model_kind:<10} precisions {','.join(backend.precisions):<20} {state}")
        return 0
    from .auto import AutoConfig, choose, format_table

    choice = choose(AutoConfig(model=args.model, device=args.device, batch_size=args.batch_size,
                               min_psnr=args.min_psnr, refresh=args.refresh, report=False))
    print(format_table(choice))
    print(f"auto: {choice.backend} {choice.precision} ({choice.reason}{'; cached' if choice.cached else ''})")
    return 0
