"""`ganforge triton-server REPO`: a repository from `ganforge export --format triton` on the Triton Inference Server
of the nvidia-pytriton wheel, in the foreground until Ctrl-C."""

from __future__ import annotations

import time
from pathlib import Path

from ganforge.cliutil import Parser
from ganforge.errors import UserError

EXAMPLES = """\
  ganforge triton-server repo/          # from `ganforge export RUN --format triton --triton-backend python --out repo/`
  curl -d '{"inputs":[{"name":"seed","datatype":"INT64","shape":[1,1],"data":[7]}]}' \\
       http://127.0.0.1:8000/v2/models/ganforge/infer
"""


def main(argv: list[str]) -> int:
    parser = Parser("triton-server", "Serve a Triton model repository with the pip-installed Triton server "
                                     "(pip install --no-deps nvidia-pytriton==0.7.0).", EXAMPLES)
    parser.add_argument("repository", help="a folder written by `ganforge export --format triton`")
    parser.add_argument("--http-port", type=int, default=8000, help="KServe v2 HTTP port (8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC port (8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (8002)")
    parser.add_argument("--log", type=Path, default=Path("tritonserver.log"), help="the server's log file "
                                                                                   "(default ./tritonserver.log)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every model to load")
    args = parser.parse_args(argv)

    from .triton_server import TritonServer, missing_backends

    repository = Path(args.repository)
    if not (repository / "generator" / "config.pbtxt").is_file():
        raise UserError(f"{repository} is not a repository from `ganforge export --format triton` (no generator)")
    try:
        server = TritonServer(repository, args.timeout, args.log, (args.http_port, args.grpc_port, args.metrics_port))
    except RuntimeError as error:  # no server installed: how to install it
        raise UserError(str(error)) from error
    missing = missing_backends(repository, {"python"})
    if missing:
        raise UserError(f"{'; '.join(missing)}, which the pip-installed server lacks (it has only the Python "
                        "backend): export with --triton-backend python, or serve the repository with the NGC container")
    try:
        with server:
            print(f"Triton serving {repository}: HTTP {server.http_address}, gRPC {server.grpc_address}, "
                  f"metrics 127.0.0.1:{args.metrics_port}; log {args.log}; Ctrl-C stops it", flush=True)
            while server.process.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:  # the way to stop it: the server is stopped on leaving the block
        print("Triton stopped", flush=True)
        return 0
    except RuntimeError as error:  # the repository did not load: the model's own line from the log
        raise UserError(f"tritonserver did not start: {server.first_error()} (log: {args.log})") from error
    raise UserError(f"tritonserver exited with {server.process.returncode}: {server.first_error()} (log: {args.log})")
