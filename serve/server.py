"""HTTP serving over the KServe v2 / Open Inference Protocol, with dynamic batching and Prometheus metrics.

    GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/{name}, /v2/models/{name}/ready
    POST /v2/models/{name}/infer   inputs: "seed" INT64 [n]  or  "z" FP32 [n, z_dim]; output "images" FP32
    GET  /v1/sample.png?seed=N     one image, for a browser
    GET  /metrics                  Prometheus text format

Errors follow the protocol: {"error": "..."} with 400 (malformed), 401 (key), 404 (model), 503 (queue full,
with Retry-After). JSON tensors and the binary tensor extension (inputs and outputs) are supported.
"""

from __future__ import annotations

import io
import json
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import ganforge

from .batcher import BatcherMetrics, DynamicBatcher, QueueFull
from .latents import MAX_SEED, latents_for_seeds
from .runners import Runner

DATATYPES = {"INT64": np.int64, "FP32": np.float32, "INT32": np.int32}


@dataclass(frozen=True)
class ServerConfig:
    model_name: str = "generator"
    max_batch: int = 64
    max_queue_delay_us: int = 2000
    max_queue: int = 1024
    api_key: str | None = None


class BadRequest(Exception):
    pass


class PrometheusMetrics(BatcherMetrics):
    def __init__(self, max_batch: int):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("ganforge_requests", "Inference requests by HTTP status", ["status"],
                                registry=self.registry)
        buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, max_batch})
        self.batch_size = Histogram("ganforge_batch_size", "Latents per inference batch", buckets=buckets,
                                    registry=self.registry)
        self.queue_seconds = Histogram("ganforge_queue_seconds", "Time a request waited for its batch",
                                       registry=self.registry)
        self.compute_seconds = Histogram("ganforge_compute_seconds", "Inference time per batch",
                                         registry=self.registry)
        self.queue_depth = Gauge("ganforge_queue_latents", "Latents waiting", registry=self.registry)

    def batch(self, size: int, compute_seconds: float) -> None:
        self.batch_size.observe(size)
        self.compute_seconds.observe(compute_seconds)

    def waited(self, seconds: float) -> None:
        self.queue_seconds.observe(seconds)

    def depth(self, latents: int) -> None:
        self.queue_depth.set(latents)


def split_binary_body(raw: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The binary tensor extension: the first Inference-Header-Content-Length bytes are the JSON header, the rest
    are the raw input tensors in order. Without the header the whole body is JSON."""
    if header_length is None:
        return json.loads(raw), b""
    try:
        size = int(header_length)
    except ValueError:
        raise BadRequest("Inference-Header-Content-Length must be an integer") from None
    if not 0 < size <= len(raw):
        raise BadRequest(f"Inference-Header-Content-Length {size} does not fit a body of {len(raw)} bytes")
    return json.loads(raw[:size]), raw[size:]


def parse_infer_request(body: dict, z_dim: int, max_batch: int, binary: bytes = b"") -> np.ndarray:
    """A v2 inference request -> float32 latents [n, z_dim]; BadRequest says what is wrong."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("request needs exactly one input: 'seed' (INT64 [n]) or 'z' (FP32 [n, z_dim])")
    tensor = inputs[0]
    name, datatype, shape, data = (tensor.get(k) for k in ("name", "datatype", "shape", "data"))
    if name not in ("seed", "z"):
        raise BadRequest(f"unknown input {name!r}: use 'seed' or 'z'")
    expected = {"seed": ("INT64", "INT32"), "z": ("FP32",)}[name]
    if datatype not in expected:
        raise BadRequest(f"input {name!r} must be {' or '.join(expected)}, got {datatype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest("shape must be a list of non-negative integers")
    want_rank = 1 if name == "seed" else 2
    if len(shape) != want_rank or (name == "z" and shape[1] != z_dim):
        raise BadRequest(f"input {name!r} must have shape {'[n]' if name == 'seed' else f'[n, {z_dim}]'}, "
                         f"got {shape}")
    count = shape[0]
    if not 1 <= count <= max_batch:
        raise BadRequest(f"a request may carry 1..{max_batch} {'seeds' if name == 'seed' else 'latents'}, "
                         f"got {count}")
    binary_size = (tensor.get("parameters") or {}).get("binary_data_size")
    try:
        if binary_size is not None:  # little-endian raw bytes after the JSON header
            if binary_size != len(binary):
                raise BadRequest(f"input {name!r} declares {binary_size} binary bytes, the body holds {len(binary)}")
            array = np.frombuffer(binary, dtype=np.dtype(DATATYPES[datatype]).newbyteorder("<"))
        else:
            array = np.asarray(data, dtype=DATATYPES[datatype]).reshape(-1)
    except (TypeError, ValueError) as error:
        raise BadRequest(f"input {name!r} data does not match {datatype}: {error}") from None
    if array.size != int(np.prod(shape)):
        raise BadRequest(f"input {name!r} has {array.size} values for shape {shape}")
    if name == "seed":
        if array.min() < 0 or array.max() > MAX_SEED:
            raise BadRequest(f"seeds must be in 0..{MAX_SEED}")
        return latents_for_seeds(array.tolist(), z_dim)
    z = array.reshape(shape).astype(np.float32)
    if not np.isfinite(z).all():
        raise BadRequest("z must be finite")
    return z


def wants_binary_output(body: dict) -> bool:
    if body.get("parameters", {}).get("binary_data_output"):
        return True
    return any(o.get("parameters", {}).get("binary_data") for o in body.get("outputs", []) or [])


def create_app(runner: Runner, config: ServerConfig):
    info = runner.info
    metrics = PrometheusMetrics(config.max_batch)
    batcher = DynamicBatcher(runner.infer, config.max_batch, config.max_queue_delay_us, config.max_queue, metrics)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()  # requests in flight finish first

    app = FastAPI(title="ganforge", version=ganforge.__version__, lifespan=lifespan)

    def error(status: int, message: str, headers: dict | None = None):
        metrics.requests.labels(str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def authorised(request: Request) -> bool:
        if not config.api_key:
            return True
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        return secrets.compare_digest(given.encode(), config.api_key.encode())

    def model_error(request: Request, name: str):
        if not authorised(request):
            return error(401, "missing or wrong API key (send it as 'Authorization: Bearer KEY' or 'X-API-Key')")
        if name != config.model_name:
            return error(404, f"unknown model {name!r}; this server serves {config.model_name!r}")
        return None

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/v2")
    async def server_metadata():
        return {"name": "ganforge", "version": ganforge.__version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str, request: Request):
        if (problem := model_error(request, name)) is not None:
            return problem
        return {"name": name, "versions": ["1"], "platform": info.backend,
                "inputs": [{"name": "seed", "datatype": "INT64", "shape": [-1]},
                           {"name": "z", "datatype": "FP32", "shape": [-1, info.z_dim]}],
                "outputs": [{"name": "images", "datatype": "FP32", "shape": [-1, *info.output_shape]}],
                "parameters": {"precision": info.precision, "device": info.device, "max_batch": config.max_batch,
                               "value_range": [-1, 1]}}

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str, request: Request):
        if (problem := model_error(request, name)) is not None:
            return problem
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        if (problem := model_error(request, name)) is not None:
            return problem
        try:
            body, binary = split_binary_body(await request.body(),
                                             request.headers.get("inference-header-content-length"))
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            z = parse_infer_request(body, info.z_dim, config.max_batch, binary)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "request body is not valid JSON")
        except BadRequest as bad:
            return error(400, str(bad))
        try:
            images = await batcher.submit(z)
        except QueueFull as full:
            return error(503, str(full), headers={"Retry-After": "1"})
        metrics.requests.labels("200").inc()
        output = {"name": "images", "datatype": "FP32", "shape": list(images.shape)}
        header = {"model_name": name, "model_version": "1", "id": body.get("id", ""), "outputs": [output]}
        if not wants_binary_output(body):
            output["data"] = images.reshape(-1).tolist()
            return JSONResponse(header)
        raw = np.ascontiguousarray(images, dtype="<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        head = json.dumps(header).encode()
        return Response(head + raw, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(len(head))})

    @app.get("/v1/sample.png")
    async def sample_png(request: Request, seed: int = 0):
        from PIL import Image

        from ganforge.train.images import nchw_to_nhwc, to_uint8

        if not authorised(request):
            return error(401, "missing or wrong API key")
        if len(info.output_shape) != 3:
            return error(400, "this model makes 2D points, not images")
        if not 0 <= seed <= MAX_SEED:
            return error(400, f"seed must be in 0..{MAX_SEED}")
        try:
            images = await batcher.submit(latents_for_seeds([seed], info.z_dim))
        except QueueFull as full:
            return error(503, str(full), headers={"Retry-After": "1"})
        picture = nchw_to_nhwc(to_uint8(images))[0]
        buffer = io.BytesIO()
        Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buffer, format="PNG")
        metrics.requests.labels("200").inc()
        return Response(buffer.getvalue(), media_type="image/png")

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.batcher, app.state.metrics = batcher, metrics
    return app
