"""`ganforge serve MODEL --backend B`."""

from __future__ import annotations

import os

from ganforge.cliutil import Parser
from ganforge.errors import UserError

EXAMPLES = """\
  ganforge serve runs/00000-digits-dcgan --port 8000
  ganforge serve g.onnx --backend openvino --max-batch 64 --max-queue-delay-us 2000
  curl -o img.png 'http://127.0.0.1:8000/v1/sample.png?seed=42'
  curl -d '{"inputs":[{"name":"seed","datatype":"INT64","shape":[2],"data":[1,2]}]}' \\
       http://127.0.0.1:8000/v2/models/generator/infer
"""


def main(argv: list[str]) -> int:
    parser = Parser("serve", "Serve a generator over HTTP (KServe v2) with dynamic batching.", EXAMPLES)
    parser.add_argument("model", help="run folder, checkpoint, .onnx, .pt2 or .engine (as the backend needs)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-name", default="generator")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument("--max-queue", type=int, default=1024, help="latents allowed to wait; beyond: 503")
    parser.add_argument("--api-key", default=os.environ.get("GANFORGE_API_KEY"),
                        help="require this key (default: $GANFORGE_API_KEY; none = open)")
    args = parser.parse_args(argv)
    if args.max_batch < 1 or args.max_queue < 1 or args.max_queue_delay_us < 0:
        raise UserError("--max-batch and --max-queue must be positive and --max-queue-delay-us non-negative")

    import uvicorn

    from .models import model_for_backend
    from .runners import open_runner
    from .server import ServerConfig, create_app

    model_path = model_for_backend(args.model, args.backend, args.precision, device=args.device)
    runner = open_runner(args.backend, model_path, args.device, args.precision)
    config = ServerConfig(args.model_name, min(args.max_batch, runner.info.max_batch), args.max_queue_delay_us,
                          args.max_queue, args.api_key)
    print(f"serving {runner.info.backend} {runner.info.precision} as {args.model_name!r} on "
          f"http://{args.host}:{args.port} (max batch {config.max_batch}, delay {config.max_queue_delay_us} us)")
    with runner:
        uvicorn.run(create_app(runner, config), host=args.host, port=args.port, log_level="warning",
                    timeout_graceful_shutdown=30)
    return 0
