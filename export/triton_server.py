"""A Triton Inference Server for a model repository, from the ``nvidia-pytriton`` wheel (tritonserver 2.51 with its
Python backend; no onnxruntime, OpenVINO or TensorRT backends: those are in NVIDIA's NGC containers). It runs on a
CPU-only machine. The wheel's binary needs its bundled libraries and the running Python's libpython on the library
path, and a backend folder holding the Python backend with the stub built for this Python version; ``TritonServer``
arranges all three, so the tests and benchmarks run the repository exactly as the docs tell a user to.

    with TritonServer("repo") as server:                     # free ports; waits until every model is ready
        with tritonclient.http.InferenceServerClient(server.http_address) as client:  # closed before the server
            ...                                               # stops: it waits up to 30 s for open connections

Install the server with ``pip install --no-deps nvidia-pytriton==0.7.0``: only its binary is used, and its Python
package pins NumPy below 2.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ganforge.local_server import free_ports, wait_ready

INSTALL = "pip install --no-deps nvidia-pytriton==0.7.0"


@dataclass(frozen=True)
class ServerFiles:
    binary: Path  # tritonserver
    libraries: Path  # the wheel's bundled shared libraries
    python_backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this Python version


def server_files() -> ServerFiles:
    """The wheel's server files for this Python, or RuntimeError saying what is missing (and how to install)."""
    spec = importlib.util.find_spec("pytriton")  # locates the package without importing it (its imports need NumPy<2)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"no Triton server installed: {INSTALL}")
    package = Path(next(iter(spec.submodule_search_locations)))
    server = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    files = ServerFiles(server / "bin" / "tritonserver", package.parent / "nvidia_pytriton.libs",
                        server / "backends" / "python", server / "python_backend_stubs" / version /
                        "triton_python_backend_stub")
    for path in (files.binary, files.libraries, files.python_backend, files.stub):
        if not path.exists():
            raise RuntimeError(f"the Triton server install lacks {path} (Python {version}?): {INSTALL}")
    return files


def backend_directory(files: ServerFiles, folder: Path) -> Path:
    """``folder/python/``: the Python backend with this Python's stub (links to the wheel's files)."""
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    for source in (*files.python_backend.glob("*.*"), files.stub):
        link = python / source.name
        if not link.exists():
            link.symlink_to(source)
    return folder


# what a model's config asks for -> the backend folder it needs (ensembles need none)
PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch"}


def missing_backends(repository: Path, available: set[str]) -> list[str]:
    """One line per model of ``repository`` whose Triton backend is not in ``available`` (this server has only
    the Python backend; the NGC containers have the others)."""
    from .triton import parse_config

    missing = []
    for config_file in sorted(Path(repository).glob("*/config.pbtxt")):
        config = parse_config(config_file.read_text())
        backend = config.backend or PLATFORM_BACKENDS.get(config.platform, "")
        if config.platform != "ensemble" and backend not in available:
            missing.append(f"model {config_file.parent.name} needs Triton's {backend} backend")
    return missing


def server_environment(files: ServerFiles) -> dict[str, str]:
    """The server's environment: this Python's libpython first on the library path (the stub embeds whichever
    libpython the loader finds first; another Python's has other packages), then the wheel's libraries."""
    paths = [sysconfig.get_config_var("LIBDIR") or "", str(files.libraries), os.environ.get("LD_LIBRARY_PATH", "")]
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in paths if p)}


def server_command(files: ServerFiles, repository: Path, backends: Path, ports: tuple[int, int, int]) -> list[str]:
    http, grpc, metrics = ports
    return [str(files.binary), "--model-repository", str(Path(repository).resolve()), "--backend-directory",
            str(backends), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
            "--log-verbose", "0"]


class TritonServer:
    """The server on ``repository`` for the length of a ``with`` block; its log in ``log_file``. Entering waits until
    the server says it is ready (every model loaded) and raises RuntimeError with the log's tail if it is not."""

    def __init__(self, repository: str | Path, timeout: float = 120.0, log_file: Path | None = None,
                 ports: tuple[int, int, int] | None = None):
        self.files = server_files()
        self.repository, self.timeout = Path(repository), timeout
        self._scratch = tempfile.TemporaryDirectory(prefix="ganforge-triton-")
        self.log_file = log_file or Path(self._scratch.name) / "tritonserver.log"
        self.ports = ports or tuple(free_ports(3))
        self.process: subprocess.Popen | None = None

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports[1]}"

    def log(self, lines: int = 60) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def first_error(self) -> str:
        """The log's first line that says why a model did not load (ganforge's models raise one clear line)."""
        for line in self.log(10_000).splitlines():
            if "TritonModelException: " in line:  # ganforge's models: the message, without the traceback after it
                return line.split("TritonModelException: ", 1)[1].split("\\n", 1)[0]
            if "UNAVAILABLE" in line or "error:" in line.lower():
                return line.strip(" |")
        return "no error line in its log"

    def __enter__(self) -> TritonServer:
        backends = backend_directory(self.files, Path(self._scratch.name) / "backends")
        command = server_command(self.files, self.repository, backends, self.ports)
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=server_environment(self.files))
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        try:
            wait_ready(f"http://{self.http_address}/v2/health/ready", self.process, self.timeout)
        except RuntimeError as error:
            raise RuntimeError(f"tritonserver {error}; its log:\n{self.log()}") from None

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._scratch.cleanup()
