"""`ganforge sample MODEL --backend B --out DIR`."""

from __future__ import annotations

from ganforge.cliutil import Parser
from ganforge.errors import UserError
from ganforge.images import VIDEO_FORMATS

EXAMPLES = """\
  ganforge sample runs/00000-digits-dcgan --seeds 0-9999 --out samples/        # fastest accurate backend
  ganforge sample runs/00000-digits-dcgan --seeds 0-9999 --out exact/ --precision fp32 --min-psnr 60
  ganforge sample g.onnx --count 100 --seed-start 500 --format png --out pngs/
  ganforge sample runs/00000-digits-dcgan --seeds 0-19999 --format webdataset --shard-size 5000 --out wds/
  ganforge sample runs/00000-digits-dcgan --seeds 0-19999 --format parquet --image-format webp --out parquet/
  ganforge sample runs/00000-digits-dcgan --backend torch --seeds 0-63 --out grid/ --format png
  ganforge sample runs/00000-digits-dcgan --checkpoint best --seeds 0-9999 --out best/
  ganforge sample runs/00000-digits-dcgan --seeds 0-63 --class 7 --truncation 0.7 --format png --out sevens/
  ganforge sample runs/00000-digits-dcgan --interpolate 3:17:42 --frames 16 --out walk/   # strip PNG and GIF
  ganforge sample runs/00000-digits-dcgan --interpolate 3:17 --video mp4 --out walk-mp4/    # strip PNG and MP4
  ganforge sample g.onnx --seeds 0-199999 --out big/ --resume                    # continue after a crash
  torchrun --nproc-per-node 2 --no-python ganforge sample g.onnx --seeds 0-99999 --out big-2p/
"""


def main(argv: list[str]) -> int:
    parser = Parser("sample", "Sample images for seeds into npz shards or PNG files, with a manifest.", EXAMPLES)
    parser.add_argument("model", help="run folder, checkpoint, .onnx, .pt2 or .engine (as the backend needs)")
    parser.add_argument("--out", required=True, help="folder for the shards (or PNGs) and manifest.json")
    parser.add_argument("--backend", default="auto", help="auto (default: the fastest backend and precision whose "
                        "images stay within --min-psnr of fp32 PyTorch, measured once and cached), or one of "
                        "`ganforge backends`")
    parser.add_argument("--seeds", help="e.g. 0-9999 (inclusive) or 1,5,9-12")
    parser.add_argument("--count", type=int, help="number of seeds, with --seed-start")
    parser.add_argument("--seed-start", type=int, default=0, help="first seed, with --count (0)")
    parser.add_argument("--format", default="npz", choices=("npz", "png", "webdataset", "parquet"),
                        help="npz shards of NHWC uint8 images with their seeds (default); png: one PNG per seed; "
                        "webdataset: tar shards of an image and a JSON record per sample; parquet: tables that "
                        "Hugging Face datasets reads, with an Image column")
    parser.add_argument("--image-format", default="png", choices=("png", "jpeg", "webp"),
                        help="webdataset and parquet: how each image is encoded (png, lossless, default; jpeg and "
                        "webp at quality 95)")
    parser.add_argument("--batch-size", type=int, default=64, help="latents per inference call (64); the images do "
                        "not depend on it")
    parser.add_argument("--workers", type=int, default=2, help="threads that encode and write shards")
    parser.add_argument("--in-flight", type=int, help="batches computing at once, each on a copy of the model "
                        "(default: 2 on OpenVINO, whose copies are streams of one compiled model, else 1); the images "
                        "do not depend on it")
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per npz shard (10000)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8"),
                        help="default: fp32, or with --backend auto whichever precision wins")
    parser.add_argument("--min-psnr", type=float, default=40.0, help="--backend auto's accuracy bound in dB (40)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--resume", action="store_true", help="skip shards already complete in --out")
    parser.add_argument("--checkpoint", help="run folders: best, latest or step-NNNNNN (default latest)")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI", help="truncation psi in (0, 1]: "
                        "latents scaled towards the mean, for more typical, less varied images (default 1: off)")
    parser.add_argument("--class", dest="classes", metavar="K", help="a conditional model's class for every "
                        "sample (one per channel for stacked digits: 3,1,4); default: each seed's own")
    parser.add_argument("--interpolate", metavar="A:B[:C...]", help="instead of --seeds: frames along the path "
                        "between these seeds' latents, written as interpolation.png (a strip) and .gif (or "
                        ".mp4, --video) in --out")
    parser.add_argument("--video", choices=VIDEO_FORMATS, help="--interpolate: the video's format, "
                        "gif (loops; 256 colours) or mp4 (H.264, full colour; needs the video extra) (default gif)")
    parser.add_argument("--frames", type=int, default=16, help="--interpolate: frames from each seed to the next "
                        "(16)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from ganforge.latents import parse_seeds
    from ganforge.serve.runtime.latent_space import parse_classes

    from .sampler import SampleConfig, sample

    classes = parse_classes(args.classes) if args.classes is not None else None
    if args.interpolate is not None:
        return _interpolate(args, classes)
    if args.video is not None:
        raise UserError("--video is the format of --interpolate's video; without --interpolate there is none")
    if (args.seeds is None) == (args.count is None):
        raise UserError("give either --seeds or --count (or --interpolate)")
    if args.count is not None and (args.count < 1 or args.seed_start < 0):
        raise UserError("--count must be at least 1 and --seed-start non-negative")
    seeds = parse_seeds(args.seeds) if args.seeds else list(range(args.seed_start, args.seed_start + args.count))
    config = SampleConfig(model=args.model, out=args.out, seeds=tuple(seeds), backend=args.backend,
                          format=args.format, batch_size=args.batch_size, workers=args.workers,
                          in_flight=args.in_flight,
                          shard_size=args.shard_size, precision=args.precision, device=args.device,
                          resume=args.resume, quiet=args.quiet, min_psnr=args.min_psnr,
                          checkpoint=args.checkpoint, truncation=args.truncation,
                          classes=classes,
                          image_format=args.image_format)
    print(f"manifest: {sample(config)}")
    return 0


def _interpolate(args, classes) -> int:
    from ganforge.latents import parse_seeds

    from .interpolate import InterpolateConfig, interpolate

    if args.seeds is not None or args.count is not None:
        raise UserError("--interpolate takes its seeds itself (A:B[:C...]): leave out --seeds and --count")
    parts = args.interpolate.split(":")
    if not all(part.strip().isdigit() for part in parts):
        raise UserError(f"--interpolate takes seeds separated by colons, e.g. 3:17:42; got {args.interpolate!r}")
    seeds = tuple(parse_seeds(",".join(parts)))  # the seed range check
    strip, video = interpolate(InterpolateConfig(model=args.model, seeds=seeds, out=args.out, frames=args.frames,
                                               backend=args.backend, precision=args.precision, device=args.device,
                                               checkpoint=args.checkpoint, truncation=args.truncation,
                                               classes=classes, video=args.video or "gif"))
    print(f"interpolation: {strip}, {video}")
    return 0
