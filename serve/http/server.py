"""HTTP serving over the KServe v2 / Open Inference Protocol, with dynamic batching and Prometheus metrics.

    GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/{name}, /v2/models/{name}/ready
    POST /v2/models/{name}/infer   inputs: "seed" INT64 [n]  or  "z" FP32 [n, z_dim];
                                   outputs: "images" FP32 [n, C, H, W], "images_uint8" UINT8 [n, H, W, C]
    GET  /v1/sample.png?seed=N     one image, for a browser (&truncation=PSI&class=K as for `ganforge sample`)
    GET  /metrics                  Prometheus text format

Errors follow the protocol: {"error": "..."} with 400 (malformed; parsing lives in protocol.py), 401 (key),
404 (model or route), 408 (body too slow), 413 (body too large), 503 (queue full, with Retry-After), and 500
only for a real internal error (logged once, counted in /metrics). JSON tensors and the binary tensor
extension (inputs and outputs) are supported. The API key guards every route but the two health probes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

import ganforge
from ganforge.errors import UserError
from ganforge.latents import MAX_SEED
from ganforge.serve.runtime.latent_space import LatentSpace, parse_classes
from ganforge.serve.runtime.runners import Runner, copies, copies_share_cores, on_own_stream

from .batcher import BatcherMetrics, DynamicBatcher, QueueFull
from .hot_path import Reply, body_too_large, body_too_slow
from .protocol import BadRequest, ImageRows, decode_body, encode_response, latent_controls, parse_infer_request

log = logging.getLogger("ganforge.serve")
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")  # probes answer without the API key
KEY_MISSING = "missing or wrong API key (send 'Authorization: Bearer KEY' or 'X-API-Key: KEY')"
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")


@dataclass(frozen=True)
class ServerConfig:
    model_name: str = "generator"
    max_batch: int = 64
    max_queue_delay_us: int = 2000
    batch_gap_us: int = 300  # send a batch once no request has joined it for this long (0: only full or delayed)
    max_queue: int = 1024
    api_key: str | None = None
    max_body_bytes: int | None = None  # None: sized to a JSON request of max_batch latents (default_body_limit)
    body_timeout_s: float = 10.0  # a request body must arrive within this (slow senders get 408)
    metrics_public: bool = False  # with an API key: leave /metrics open to scrapers
    api_docs: bool = False  # /docs, /redoc and /openapi.json
    pad_batches: bool | None = None  # pad to powers of two; None: on GPUs (graphs/engines per shape), off on CPUs
    in_flight: int | None = None  # batches computing at once, one model copy each; None: batches_in_flight

    def __post_init__(self) -> None:
        if self.in_flight is not None and self.in_flight < 1:
            raise UserError(f"--in-flight must be at least 1, got {self.in_flight}")
        if self.max_queue < self.max_batch:
            raise UserError(f"--max-queue {self.max_queue} must be at least --max-batch {self.max_batch} "
                            "(a full request could never be queued)")

    def body_limit(self, z_dim: int) -> int:
        return self.max_body_bytes or default_body_limit(self.max_batch, z_dim)

    def batches_in_flight(self, runner: Runner) -> int:
        """Two by default on a GPU: one batch's host work (latents in, images out, the answers) overlaps the next
        batch's compute. On a CPU two where the runner's copies share the cores (``copies_share_cores``: OpenVINO,
        onnxruntime): a batch alone computes on every core, so a lone client waits no longer than with one, and under
        load two batches compute at once, each on its share of the cores, while the event loop answers and gathers
        (benchmarks/results/peers.json, peers-openvino-int8.json; docs/performance.md). Else one (the other copies would
        each want every core)."""
        device = runner.info.device
        return self.in_flight or (2 if device.startswith("cuda") or copies_share_cores(runner) else 1)


def default_body_limit(max_batch: int, z_dim: int) -> int:
    """Room for a JSON request of max_batch latents at 32 bytes a number, plus 64 KiB for the rest."""
    return 65536 + 32 * max_batch * z_dim


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
        self.queue_depth = Gauge("ganforge_queue_latents", "Latents waiting", registry=self.registry,
                                 multiprocess_mode="livesum")

    def exposition(self) -> bytes:
        """The text format; with several workers (PROMETHEUS_MULTIPROC_DIR set) the sum over all of them, so a
        scrape of any worker sees the whole server."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def batch(self, size: int, compute_seconds: float) -> None:
        self.batch_size.observe(size)
        self.compute_seconds.observe(compute_seconds)

    def waited(self, seconds: float) -> None:
        self.queue_seconds.observe(seconds)

    def depth(self, latents: int) -> None:
        self.queue_depth.set(latents)


def create_app(runner: Runner, config: ServerConfig):
    """The app around an open ``runner``; for more than one batch in flight it opens the other model copies
    itself (``copies``) and closes them when the app shuts down (the caller keeps ``runner``)."""
    service = _Service(runner, config)

    @asynccontextmanager
    async def lifespan(app):
        async with service.running():
            yield

    docs = {} if config.api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = _ServerApp(title="ganforge", version=ganforge.__version__, lifespan=lifespan, **docs)
    app.add_exception_handler(HTTPException, service.http_error)
    app.add_exception_handler(RequestValidationError, service.validation_error)
    app.add_middleware(GuardMiddleware, guard=service.guard)
    app.get("/v2/health/live")(service.live)
    app.get("/v2/health/ready")(service.ready)
    app.get("/v2")(service.server_metadata)
    app.get("/v2/models/{name}")(service.model_metadata)
    app.get("/v2/models/{name}/ready")(service.model_ready)
    app.router.add_route("/v2/models/{name}/infer", service.other_model, methods=["POST"], include_in_schema=False)
    app.get("/v1/sample.png")(service.sample_png)
    app.get("/metrics")(service.prometheus)
    app.fast_path = (f"/v2/models/{config.model_name}/infer", service.infer_fast)
    app.hot_route = service  # the same route inside the HTTP protocol (hot_path.py), where the parser allows
    app.state.batcher, app.state.metrics = service.batcher, service.metrics
    return app


class _Service:
    """What the routes share: the model's info, the config, the batcher (over the runner and its copies), the
    metrics and readiness. Each route is a method; ``create_app`` wires them to paths."""

    def __init__(self, runner: Runner, config: ServerConfig):
        self.info, self.config = runner.info, config
        self.space = LatentSpace.of(runner.info)
        self.metrics = PrometheusMetrics(config.max_batch)
        self.answered = self.metrics.requests.labels("200")
        pad = self.info.device.startswith("cuda") if config.pad_batches is None else config.pad_batches
        self.extra = copies(runner, config.batches_in_flight(runner) - 1)
        self.uint8_wanted = False  # the last request asked for images_uint8 (so batches come with theirs)
        infers = [self._rows(on_own_stream(r)) for r in (runner, *self.extra)]
        self.batcher = DynamicBatcher(infers, config.max_batch, config.max_queue_delay_us, config.max_queue,
                                      self.metrics, pad=pad, gap_us=config.batch_gap_us)
        self.body_limit = config.body_limit(self.info.z_dim)
        self.body_timeout = config.body_timeout_s
        self.path = f"/v2/models/{config.model_name}/infer".encode()  # hot_path.HotRoute's
        self.is_ready = False

    def _rows(self, infer: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], ImageRows]:
        """``infer`` on a worker thread, its images with their uint8 NHWC bytes while requests ask for those: one
        conversion of the whole batch there, not one per request on the event loop (the same bytes; a request whose
        batch came without them converts its own rows)."""
        from ganforge.images import to_uint8_nhwc

        def infer_rows(z: np.ndarray) -> ImageRows:
            images = infer(z)
            return ImageRows(images, to_uint8_nhwc(images) if self.uint8_wanted else None)

        return infer_rows

    @asynccontextmanager
    async def running(self):
        self.batcher.start()
        self.is_ready = True
        yield
        self.is_ready = False
        await self.batcher.stop()  # requests in flight finish first
        for copy in self.extra:
            copy.close()

    def error(self, status: int, message: str, headers: dict | None = None) -> Response:
        status, _, payload = self.error_reply(status, message, headers)
        return Response(payload, status_code=status, headers=headers, media_type="application/json")

    def error_reply(self, status: int, message: str, headers: dict | None = None) -> Reply:
        """{"error": message} with ``status``, counted in the metrics."""
        self.metrics.requests.labels(str(status)).inc()
        payload = json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":")).encode()
        head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
        head += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
        return status, head, payload

    def internal_error(self, error: BaseException) -> Reply:
        """A real fault while answering an infer request: logged once, counted, 500."""
        log.error("internal error on POST %s: %s", self.path.decode(), error, exc_info=error)
        return self.error_reply(500, "internal server error")

    # Every error is a JSON {"error": ...}: FastAPI's own 404/405/422 answers included (422 becomes 400).
    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        return self.error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def validation_error(self, request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return self.error(400, problems or "invalid request")

    def authorised(self, headers: dict[bytes, bytes]) -> bool:
        """'Authorization: Bearer KEY' or 'X-API-Key: KEY' (``headers``: lower-case names), in constant time."""
        if not self.config.api_key:
            return True
        header = headers.get(b"authorization")
        given = header[7:] if header and header.startswith(b"Bearer ") else headers.get(b"x-api-key", b"")
        return secrets.compare_digest(given, self.config.api_key.encode())

    def reject(self, headers: dict[bytes, bytes]) -> Reply | None:
        """An infer request's answer before its body, if it has one: 401 without the key, 413 for a declared length
        over the limit."""
        if not self.authorised(headers):
            return self.error_reply(401, KEY_MISSING)
        if (too_large := self.declared_too_large(headers.get(b"content-length"))) is not None:
            return self.error_reply(413, too_large)
        return None

    def declared_too_large(self, declared: bytes | None) -> str | None:
        if declared is not None and declared.isdigit() and int(declared) > self.body_limit:
            return f"request body of {declared.decode()} bytes exceeds the limit of {self.body_limit}"
        return None

    def client_left(self, peer: str) -> Reply:
        log.warning("client %s disconnected before sending its whole request", peer)
        return self.error_reply(499, "client disconnected")

    async def guard(self, scope, receive, send, inner) -> None:
        """The API key on every route but the probes; a real internal error is logged once, counted, 500.
        Plain ASGI (not @app.middleware, which copies every request and response through extra tasks)."""
        path = scope["path"]
        open_path = path in OPEN_PATHS or (path == "/metrics" and self.config.metrics_public)
        if not open_path and not self.authorised(dict(scope["headers"])):
            return await self.error(401, KEY_MISSING)(scope, receive, send)
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await inner(scope, receive, tracked_send)
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into a clean 500
            log.exception("internal error on %s %s: %s", scope.get("method"), path, exc)
            if not started:
                await self.error(500, "internal server error")(scope, receive, send)

    async def read_body(self, declared: bytes | None, receive) -> bytes:
        """The body, at most body_limit bytes (413 beyond), arriving within body_timeout_s (408 beyond);
        ``declared``: the Content-Length header, if any."""
        limit, timeout = self.body_limit, self.body_timeout
        if (too_large := self.declared_too_large(declared)) is not None:
            raise BadRequest(too_large, 413)
        chunks, size = [], 0

        async def read() -> None:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BadRequest(body_too_large(limit), 413)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return

        try:
            if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per request, unlike wait_for
                async with asyncio.timeout(timeout):
                    await read()
            else:
                await asyncio.wait_for(read(), timeout)
        except asyncio.TimeoutError:
            raise BadRequest(body_too_slow(timeout), 408) from None
        return b"".join(chunks)

    def model_error(self, name: str) -> Response | None:
        if name != self.config.model_name:
            return self.error(404, f"unknown model {name!r}; this server serves {self.config.model_name!r}")
        return None

    def readiness(self) -> JSONResponse:
        return JSONResponse({"ready": self.is_ready}, status_code=200 if self.is_ready else 503)

    async def live(self):
        return {"live": True}

    async def ready(self):
        return self.readiness()

    async def server_metadata(self):
        return {"name": "ganforge", "version": ganforge.__version__, "extensions": ["binary_tensor_data"]}

    async def model_metadata(self, name: str):
        if (problem := self.model_error(name)) is not None:
            return problem
        info = self.info
        return {"name": name, "versions": ["1"], "platform": info.backend,
                "inputs": [{"name": "seed", "datatype": "INT64", "shape": [-1]},
                           {"name": "z", "datatype": "FP32", "shape": [-1, info.z_dim]}],
                "outputs": [{"name": "images", "datatype": "FP32", "shape": [-1, *info.output_shape]},
                            *([{"name": "images_uint8", "datatype": "UINT8",
                                "shape": [-1, *info.output_shape[1:], info.output_shape[0]]}]
                              if len(info.output_shape) == 3 else [])],
                "parameters": {"precision": info.precision, "device": info.device,
                               "max_batch": self.config.max_batch, "max_body_bytes": self.body_limit,
                               "value_range": [-1, 1]}}

    async def model_ready(self, name: str):
        problem = self.model_error(name)
        return self.readiness() if problem is None else problem

    async def infer(self, scope, receive, send) -> None:
        """POST /v2/models/{model_name}/infer through ASGI: reached straight from the top of the app
        (``_ServerApp.fast_path``) behind the guard, where the HTTP protocol did not answer it itself (hot_path.py);
        plain ASGI (Starlette's Request and Response objects were a third of its Python time)."""
        headers = dict(scope["headers"])  # names arrive lower-cased
        try:
            raw = await self.read_body(headers.get(b"content-length"), receive)
        except BadRequest as bad:
            reply = self.error_reply(bad.status, str(bad))
        except ClientDisconnect:
            reply = self.client_left(_peer(scope))
        else:
            answered = asyncio.get_running_loop().create_future()
            self.answer(headers, raw, answered.set_result)
            reply = await answered
        status, head, payload = reply
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": payload})

    def answer(self, headers: dict[bytes, bytes], raw: bytes, reply: Callable[[Reply], None]) -> None:
        """An infer request's headers (lower-case names) and whole body in; ``reply`` is called once with the
        answer: at once for a request the server cannot take (4xx, 503, 500), else from the batcher's future when
        its images are computed. No task per request: the hot path calls this from the HTTP parser's callback."""
        try:
            length = headers.get(b"inference-header-content-length")
            body, binary = decode_body(raw, None if length is None else length.decode("latin-1"))
            parsed = parse_infer_request(body, self.space, self.config.max_batch, binary,
                                         points=len(self.info.output_shape) != 3)
            images = self.batcher.enqueue(parsed.z)
            self.uint8_wanted = any(output.name == "images_uint8" for output in parsed.outputs)
        except BadRequest as bad:
            return reply(self.error_reply(bad.status, str(bad)))
        except QueueFull as full:
            return reply(self.error_reply(503, str(full), {"Retry-After": "1"}))
        except Exception as error:  # noqa: BLE001 - a bug is a clean 500, logged once
            return reply(self.internal_error(error))
        header = {"model_name": self.config.model_name, "model_version": "1", "id": body.get("id", "")}
        images.add_done_callback(lambda done: self._computed(done, header, parsed.outputs, reply))

    def _computed(self, done: asyncio.Future, header: dict, outputs: list, reply: Callable[[Reply], None]) -> None:
        if done.cancelled():
            return
        if (error := done.exception()) is not None:
            return reply(self.internal_error(error))
        if all(o.binary for o in outputs):  # raw bytes: cheap, encoded here
            try:
                return reply(self._images_reply(header, done.result(), outputs))
            except Exception as error:  # noqa: BLE001
                return reply(self.internal_error(error))
        # JSON text of a whole image batch: off the event loop, which keeps accepting requests meanwhile
        encoding = asyncio.get_running_loop().run_in_executor(None, self._images_reply, header, done.result(), outputs)
        encoding.add_done_callback(lambda encoded: reply(encoded.result() if encoded.exception() is None
                                                         else self.internal_error(encoded.exception())))

    def _images_reply(self, header: dict, rows: ImageRows, outputs: list) -> Reply:
        payload, head_length = encode_response(header, rows, outputs)
        head = [(b"content-type", b"application/json" if head_length is None else b"application/octet-stream"),
                (b"content-length", b"%d" % len(payload))]
        if head_length is not None:
            head.append((b"inference-header-content-length", b"%d" % head_length))
        self.answered.inc()
        return 200, head, payload

    async def infer_fast(self, scope, receive, send) -> None:
        await self.guard(scope, receive, send, self.infer)

    async def other_model(self, request: Request):
        """POST /v2/models/{name}/infer for a name this server does not serve: 404 (its own is ``infer``'s)."""
        return self.model_error(request.path_params["name"])

    async def sample_png(self, seed: str = "0", truncation: float | None = None, klass: str | None = Query(None,
                         alias="class")):
        from ganforge.images import encode_image

        if len(self.info.output_shape) != 3:
            return self.error(400, "this model makes 2D points, not images")
        if not (seed.isascii() and seed.isdigit()) or int(seed) > MAX_SEED:
            return self.error(400, f"seed must be an integer in 0..{MAX_SEED}, got {seed[:40]!r}")
        try:
            controls = latent_controls(self.space, truncation, None if klass is None else list(parse_classes(klass)))
            rows = await self.batcher.submit(self.space.latents([int(seed)], controls))
        except (BadRequest, UserError) as bad:
            return self.error(400, str(bad))
        except QueueFull as full:
            return self.error(503, str(full), headers={"Retry-After": "1"})
        self.answered.inc()
        return Response(encode_image(rows.as_uint8()[0]), media_type="image/png")

    async def prometheus(self):
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


class _ServerApp(FastAPI):
    """FastAPI, with one POST path answered before FastAPI's own layers (error and telemetry middleware, exception
    handlers, route matching, exit stacks: about a third of a single-seed request's Python time). ``fast_path``
    is (path, ASGI app); the app runs ``guard`` itself, so keys, limits and 500s hold there as everywhere.
    ``hot_route``: the service that answers the same path inside the HTTP protocol (hot_path.py)."""

    fast_path: tuple[str, object] | None = None
    hot_route: object | None = None

    async def __call__(self, scope, receive, send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and scope["path"] == fast[0] and scope["method"] == "POST":
            scope["app"] = self
            return await fast[1](scope, receive, send)
        await super().__call__(scope, receive, send)


class GuardMiddleware:
    """Runs ``guard(scope, receive, send, inner)`` around every HTTP request; lifespan and the rest pass through."""

    def __init__(self, app, guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        await self.guard(scope, receive, send, self.app)


def _peer(scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
