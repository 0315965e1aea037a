"""`ganforge eval RUN|MODEL`: quality metrics of a generator against its data, beside the real-data floor."""

from __future__ import annotations

from ganforge.cliutil import Parser

EXAMPLES = """\
  ganforge eval runs/00000-digits-dcgan                        # EMA generator of the latest checkpoint
  ganforge eval runs/00000-digits-dcgan --checkpoint best --n 5000
  ganforge eval runs/00001-ring-mlp                            # 2D: modes, high quality, reverse KL
  ganforge eval g.onnx --data digits --out eval-onnx/          # an exported model, through onnxruntime
  ganforge eval runs/00000-digits-dcgan --class 7 --n 2000                # samples of one class vs its real images
  ganforge eval runs/00000-digits-dcgan --truncation 0.7
  ganforge eval runs/00000-digits-dcgan --features inception --weights inception-2015-12-05.pt
"""


def main(argv: list[str]) -> int:
    parser = Parser("eval", "Measure a generator: FD, KID, precision/recall/density/coverage, classes and modes "
                    "(images; features of a domain classifier trained here), or mode coverage (2D).", EXAMPLES)
    add = parser.add_argument
    add("model", help="run folder, checkpoint (.pt), .onnx, .pt2 or .engine")
    add("--checkpoint", help="run folders: best, latest or step-NNNNNN (default latest)")
    add("--n", type=int, help="samples, from seeds 0..n-1 (default 2,500 for 2D, 26,000 for stacked-digits, "
        "10,000 for other images)")
    add("--data", help="the data to compare with (default: what the model was trained on)")
    add("--out", help="folder for eval.json, eval.png and the cached classifier (default RUN/eval or MODEL-eval/)")
    add("--backend", help="default torch for run folders, else by the file's suffix")
    add("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    add("--batch-size", type=int, default=500, help="latents per inference call (500); the images do not depend on it")
    add("--features", default="auto", help="auto (domain classifier, or a random embedding without labels) "
        "or inception (the standard FID/KID; needs --weights)")
    add("--weights", help="--features inception: the Inception-v3 TorchScript file (inception-2015-12-05.pt)")
    add("--truncation", type=float, default=1.0, metavar="PSI", help="truncation psi in (0, 1], as for "
        "`ganforge sample` (default 1: off)")
    add("--class", dest="classes", metavar="K", help="a conditional model's class for every sample; on the data's "
        "own labels the reference is that class's real images (per-class metrics)")
    add("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from ganforge.serve.runtime.latent_space import parse_classes

    from .evaluate import EvalConfig, evaluate_model
    from .report import table

    config = EvalConfig(model=args.model, out=args.out, checkpoint=args.checkpoint, n=args.n, data=args.data,
                        backend=args.backend, device=args.device, batch_size=args.batch_size,
                        features=args.features, weights=args.weights, quiet=args.quiet, truncation=args.truncation,
                        classes=parse_classes(args.classes) if args.classes is not None else None)
    result = evaluate_model(config)
    print(table(result))
    print(f"wrote {result['out']}/eval.json, {result['picture']}")
    return 0
