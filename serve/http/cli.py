"""`ganforge serve MODEL --backend B`."""

from __future__ import annotations

import os

from ganforge.cliutil import Parser
from ganforge.errors import UserError

EXAMPLES = """\
  ganforge serve runs/00000-digits-dcgan --port 8000                     # fastest accurate backend
  ganforge serve g.onnx --backend openvino --max-batch 64 --max-queue-delay-us 2000
  ganforge serve runs/00000-digits-dcgan --workers 2 --port 8000        # two processes, one port
  curl -o img.png 'http://127.0.0.1:8000/v1/sample.png?seed=42'
  curl -d '{"inputs":[{"name":"seed","datatype":"INT64","shape":[2],"data":[1,2]}]}' \\
       http://127.0.0.1:8000/v2/models/generator/infer
"""


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    cores = os.cpu_count() or 1
    _check(args, cores)
    from .server import ServerConfig

    # checked here (--in-flight, --max-queue), before the port and the model
    server = ServerConfig(model_name=args.model_name, max_batch=args.max_batch,
                          max_queue_delay_us=args.max_queue_delay_us, batch_gap_us=args.batch_gap_us,
                          max_queue=args.max_queue, in_flight=args.in_flight, api_key=args.api_key,
                          max_body_bytes=args.max_body_bytes, body_timeout_s=args.body_timeout,
                          metrics_public=args.metrics_public, api_docs=args.api_docs)
    sock = listen(args.host, args.port)  # before loading the model: a taken port fails fast, with one line

    from ganforge.export.model_source import resolve_model
    from ganforge.serve.runtime.auto import backend_file

    from .workers import ServeSpec, serve_single, supervise

    backend, precision, model_file = backend_file(resolve_model(args.model, args.checkpoint), args.backend,
                                                  args.precision, args.device, batch_size=args.max_batch,
                                                  min_psnr=args.min_psnr)
    spec = ServeSpec(model_file, backend, precision, args.device, args.host, server, args.header_timeout,
                     args.keep_alive, args.http,
                     threads=args.threads or _split_cores(cores, args), workers=args.workers)
    if args.workers == 1:
        return serve_single(spec, sock)
    return supervise(spec, sock, args.workers)


def _parser() -> Parser:
    parser = Parser("serve", "Serve a generator over HTTP (KServe v2) with dynamic batching.", EXAMPLES)
    parser.add_argument("model", help="run folder, checkpoint, .onnx, .pt2 or .engine (as the backend needs)")
    parser.add_argument("--backend", default="auto", help="auto (default: the fastest backend and precision at "
                        "--max-batch whose images stay within --min-psnr of fp32 PyTorch; measured once, cached), "
                        "or one of `ganforge backends`")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8"),
                        help="default: fp32, or with --backend auto whichever precision wins")
    parser.add_argument("--min-psnr", type=float, default=40.0, help="--backend auto's accuracy bound in dB (40)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--checkpoint", help="run folders: best, latest or step-NNNNNN (default latest)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1; 0.0.0.0 for every "
                        "interface: set --api-key then)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on (8000)")
    parser.add_argument("--model-name", default="generator", help="the name in /v2/models/NAME (generator)")
    parser.add_argument("--max-batch", type=int, default=64, help="largest batch of latents run at once (64)")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, help="longest a request waits for its batch "
                        "to fill (default 2000)")
    parser.add_argument("--batch-gap-us", type=int, default=300, help="send a batch early once no request has "
                        "joined it for this long: the load paused, waiting longer only adds latency (default 300; 0: "
                        "only full batches or --max-queue-delay-us)")
    parser.add_argument("--in-flight", type=int, help="batches computing at once, each on its own copy of the "
                        "model (default: 2 on a GPU, and on a CPU with OpenVINO or onnxruntime, whose batches "
                        "compute on every core while alone and on a share of them beside another; else 1)")
    parser.add_argument("--max-queue", type=int, default=1024, help="latents allowed to wait; beyond: 503")
    parser.add_argument("--api-key", default=os.environ.get("GANFORGE_API_KEY"),
                        help="require this key on every route but the health probes (default: $GANFORGE_API_KEY; "
                        "none = open)")
    parser.add_argument("--metrics-public", action="store_true", help="leave /metrics open when --api-key is set")
    parser.add_argument("--api-docs", action="store_true", help="serve /docs and /openapi.json (default off)")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body; beyond: 413 (default: a JSON "
                        "request of --max-batch latents, 64 KiB + 32 B x max-batch x z-dim)")
    parser.add_argument("--body-timeout", type=float, default=10.0, help="seconds a request body may take to "
                        "arrive; beyond: 408 (default 10)")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="seconds a client has to send a "
                        "request's line and headers, after connecting or after its previous response (default 10)")
    parser.add_argument("--workers", type=int, default=1, help="server processes behind the port, one model copy "
                        "each, the CPU cores split between them (default 1)")
    parser.add_argument("--threads", type=int, help="inference threads per worker (default: every core, split "
                        "between --workers on a CPU); fewer leave cores to the HTTP path and to other programs")
    parser.add_argument("--force", action="store_true", help="allow --workers (or --workers x --threads) above the "
                        "core count")
    parser.add_argument("--http", choices=("auto", "httptools", "h11"), default="auto", help="HTTP parser: auto "
                        "(default: httptools where installed, as with the serve extra; else h11)")
    parser.add_argument("--keep-alive", type=float, default=5.0, help="seconds an idle keep-alive connection "
                        "stays open (default 5)")
    return parser


def _check(args, cores: int) -> None:
    """Every flag the model and the port do not decide, as one line each."""
    if args.max_batch < 1 or args.max_queue < 1 or min(args.max_queue_delay_us, args.batch_gap_us) < 0:
        raise UserError("--max-batch and --max-queue must be positive, --max-queue-delay-us and --batch-gap-us "
                        "non-negative")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    if (args.max_body_bytes is not None and args.max_body_bytes < 1) or min(
            args.body_timeout, args.header_timeout, args.keep_alive) <= 0:
        raise UserError("--max-body-bytes, --body-timeout, --header-timeout and --keep-alive must be positive")
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.workers > cores and not args.force:
        raise UserError(f"--workers {args.workers} exceeds this machine's {cores} cores (each worker is a model "
                        "copy with its own threads): add --force to run them anyway")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.threads and args.threads * args.workers > cores and not args.force:
        raise UserError(f"--threads {args.threads} x --workers {args.workers} exceeds this machine's {cores} cores: "
                        "add --force to run them anyway")
    if args.workers > 1 and args.device.startswith("cuda"):
        _check_gpus(args.device, args.workers)
    if args.http == "httptools":
        from .connections import httptools_available

        if not httptools_available():
            raise UserError("--http httptools: httptools is not installed (pip install 'ganforge[serve]')")


def _split_cores(cores: int, args) -> int | None:
    """Several CPU workers share the cores; one worker (or GPU workers) leaves the runtime its default."""
    return max(1, cores // args.workers) if args.workers > 1 and args.device == "cpu" else None


def _check_gpus(device: str, workers: int) -> None:
    """Several workers on GPUs: one per GPU, so --device cuda (worker i on cuda:i) and enough GPUs."""
    import torch

    if device != "cuda":
        raise UserError(f"--workers {workers} places one worker per GPU: use --device cuda, not {device}")
    if workers > torch.cuda.device_count():
        raise UserError(f"--workers {workers} needs {workers} GPUs; this machine has {torch.cuda.device_count()}")


def listen(host: str, port: int):
    """A listening socket on host:port, or one clear line (port taken, address not here, no permission)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UserError(f"--host {host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.set_inheritable(True)
    return sock
