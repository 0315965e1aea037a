"""The KServe v2 (Open Inference Protocol) request parser: bytes from a client in, latents out, or BadRequest.

Strict on purpose: client input never reaches numpy unchecked, so nothing a client sends can raise anything but
BadRequest (a 4xx answer). Integers must be JSON integers (not 1.5, "1" or true), seeds must fit their
datatype and 0..2^63-1, z must be finite numbers, ``parameters`` must be objects and ``outputs`` a list of them.

    body, binary = decode_body(raw, request.headers.get("inference-header-content-length"))
    request = parse_infer_request(body, LatentSpace(z_dim=64), max_batch=64, binary=binary)
    rows = ImageRows(run(request.z))
    payload, header_length = encode_response({"model_name": "generator", "id": ""}, rows, request.outputs)

Seed requests may carry the latent controls as request parameters: ``{"parameters": {"truncation": 0.7, "class":
3}}`` (``class`` a list for models with a class per channel), applied as `ganforge sample --truncation --class` does.

Outputs: ``images`` FP32 [n, C, H, W] in [-1, 1] (or [n, 2] points), and ``images_uint8`` UINT8 [n, H, W, C], the
bytes `ganforge sample` writes, for clients that want pictures. Each as JSON or, with ``binary_data``, raw.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from ganforge.errors import UserError
from ganforge.latents import MAX_SEED, LatentControls
from ganforge.serve.runtime.latent_space import LatentSpace

DATATYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32}
OUTPUTS = {"images": "FP32", "images_uint8": "UINT8"}
INPUTS = {"seed": ("INT64", "INT32"), "z": ("FP32",)}
SEED_LIMITS = {"INT64": MAX_SEED, "INT32": 2**31 - 1}
FP32_MAX = float(np.finfo(np.float32).max)


class BadRequest(Exception):
    """Client input the server cannot use; ``status`` is the HTTP answer (400, or 413 for a body too large)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_body(raw: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """A request body -> (JSON header object, binary tensor bytes). The binary tensor extension: the first
    Inference-Header-Content-Length bytes are JSON, the rest the raw input tensors. Without it all is JSON."""
    binary = b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise BadRequest("Inference-Header-Content-Length must be an integer") from None
        if not 0 < size <= len(raw):
            raise BadRequest(f"Inference-Header-Content-Length {size} does not fit a body of {len(raw)} bytes")
        raw, binary = raw[:size], raw[size:]
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("request JSON is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body, binary


def _object(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flatten(data, depth: int, name: str) -> list:
    """Row-major values of a flat or nested JSON list (the protocol allows both)."""
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r} needs 'data' as a JSON list (or binary data)")
    values = data
    for _ in range(depth - 1):
        if all(isinstance(v, list) for v in values):
            values = [x for v in values for x in v]
    return values


def _seed_values(values: list, datatype: str) -> np.ndarray:
    limit = SEED_LIMITS[datatype]
    for value in values:
        if not _is_int(value):
            raise BadRequest(f"seeds must be JSON integers, got {json.dumps(value)[:40]}")
        if not 0 <= value <= limit:
            raise BadRequest(f"seeds must be in 0..{limit} for {datatype}, got {value}")
    return np.asarray(values, dtype=np.int64)


def _z_values(values: list) -> np.ndarray:
    for value in values:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BadRequest(f"z values must be JSON numbers, got {json.dumps(value)[:40]}")
        if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > FP32_MAX:  # ints of any size too
            raise BadRequest("z must be finite (float32)")
    return np.asarray(values, dtype=np.float32)


def _binary_values(binary: bytes, size, name: str, datatype: str) -> np.ndarray:
    if not _is_int(size) or size < 0:
        raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer")
    if size != len(binary):
        raise BadRequest(f"input {name!r} declares {size} binary bytes, the body holds {len(binary)}")
    itemsize = np.dtype(DATATYPES[datatype]).itemsize
    if size % itemsize:
        raise BadRequest(f"input {name!r}: {size} bytes is not a whole number of {datatype} values")
    array = np.frombuffer(binary, dtype=np.dtype(DATATYPES[datatype]).newbyteorder("<"))
    if name == "seed":
        if array.size and array.min() < 0:
            raise BadRequest(f"seeds must be in 0..{SEED_LIMITS[datatype]}")
        return array.astype(np.int64)
    if not np.isfinite(array).all():
        raise BadRequest("z must be finite (float32)")
    return array.astype(np.float32)


@dataclass(frozen=True)
class OutputRequest:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    z: np.ndarray  # float32 [n, z_dim]
    outputs: list[OutputRequest]


def parse_infer_request(body: dict, space: LatentSpace, max_batch: int, binary: bytes = b"",
                        points: bool = False) -> InferRequest:
    """A v2 inference request -> its float32 latents [n, z_dim] and the outputs it asks for; BadRequest says what
    is wrong. ``points``: the model makes 2D points, which have no ``images_uint8``."""
    z_dim = space.z_dim
    parameters = _object(body.get("parameters"), "'parameters'")
    outputs = body.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, dict) for o in outputs)):
        raise BadRequest("'outputs' must be a list of objects")
    for output in outputs or []:
        _object(output.get("parameters"), "an output's 'parameters'")
    wanted = requested_outputs(body)
    if points and any(o.name == "images_uint8" for o in wanted):
        raise BadRequest("'images_uint8' is for image models; this model makes 2D points")
    if not isinstance(body.get("id", ""), str):
        raise BadRequest("'id' must be a string")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("request needs exactly one input: 'seed' (INT64 [n]) or 'z' (FP32 [n, z_dim])")
    tensor = inputs[0]
    name, datatype, shape = (tensor.get(k) for k in ("name", "datatype", "shape"))
    if not isinstance(name, str) or name not in INPUTS:
        raise BadRequest(f"unknown input {str(name)[:40]!r}: use 'seed' or 'z'")
    if not isinstance(datatype, str) or datatype not in INPUTS[name]:
        raise BadRequest(f"input {name!r} must be {' or '.join(INPUTS[name])}, got {str(datatype)[:20]!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise BadRequest("shape must be a list of non-negative integers")
    rank = 1 if name == "seed" else 2
    if len(shape) != rank or (name == "z" and shape[1] != z_dim):
        raise BadRequest(f"input {name!r} must have shape {'[n]' if name == 'seed' else f'[n, {z_dim}]'}, "
                         f"got {shape}")
    count = shape[0]
    if not 1 <= count <= max_batch:
        raise BadRequest(f"a request may carry 1..{max_batch} {'seeds' if name == 'seed' else 'latents'}, "
                         f"got {count}")
    size = _object(tensor.get("parameters"), "an input's 'parameters'").get("binary_data_size")
    if size is not None:
        array = _binary_values(binary, size, name, datatype)
    else:
        values = _flatten(tensor.get("data"), rank, name)
        if len(values) != count * (z_dim if name == "z" else 1):
            raise BadRequest(f"input {name!r} has {len(values)} values for shape {shape}")
        array = _seed_values(values, datatype) if name == "seed" else _z_values(values)
    if array.size != count * (z_dim if name == "z" else 1):
        raise BadRequest(f"input {name!r} has {array.size} values for shape {shape}")
    controls = latent_controls(space, parameters.get("truncation"), parameters.get("class"))
    if name == "z" and controls is not None:
        raise BadRequest("'truncation' and 'class' apply to seed inputs: send 'seed', or apply them to your own z")
    z = space.latents(array.tolist(), controls) if name == "seed" else array.reshape(count, z_dim)
    return InferRequest(z, wanted)


def latent_controls(space: LatentSpace, truncation, classes) -> LatentControls | None:
    """The controls of a request's ``truncation`` (a JSON number) and ``class`` (an integer, or a list of them);
    None when neither is given. A value the model cannot take is BadRequest, with the reason."""
    if truncation is None and classes is None:
        return None
    if truncation is not None and (isinstance(truncation, bool) or not isinstance(truncation, (int, float))):
        raise BadRequest("'truncation' must be a number in (0, 1]")
    if classes is not None:
        classes = classes if isinstance(classes, list) else [classes]
        if not classes or not all(_is_int(k) for k in classes):
            raise BadRequest("'class' must be an integer, or a list of them (one per channel)")
    try:
        return space.controls(1.0 if truncation is None else truncation, classes)
    except UserError as error:
        raise BadRequest(str(error)) from None


def requested_outputs(body: dict) -> list[OutputRequest]:
    """The outputs a request asks for (default: ``images``), each JSON or binary (the request's
    ``binary_data_output`` parameter, overridden per output by ``binary_data``)."""
    default_binary = bool(_object(body.get("parameters"), "'parameters'").get("binary_data_output"))
    outputs = body.get("outputs") or [{"name": "images"}]
    found = []
    for output in outputs:
        name = output.get("name")
        if not isinstance(name, str) or name not in OUTPUTS:
            raise BadRequest(f"unknown output {str(name)[:40]!r}: use {' or '.join(map(repr, OUTPUTS))}")
        if any(o.name == name for o in found):
            raise BadRequest(f"output {name!r} requested twice")
        found.append(OutputRequest(name, bool((output.get("parameters") or {}).get("binary_data", default_binary))))
    return found


@dataclass(frozen=True)
class ImageRows:
    """Images as the runtime made them (``images``), and their ``images_uint8`` bytes where they were made already:
    the server converts a whole batch at once on its worker thread and answers each request with its rows."""

    images: np.ndarray
    uint8: np.ndarray | None = None

    def __getitem__(self, rows: slice) -> ImageRows:
        return ImageRows(self.images[rows], None if self.uint8 is None else self.uint8[rows])

    def as_uint8(self) -> np.ndarray:
        from ganforge.images import to_uint8_nhwc

        return self.uint8 if self.uint8 is not None else to_uint8_nhwc(self.images)


def encode_response(header: dict, rows: ImageRows, outputs: list[OutputRequest]) -> tuple[bytes, int | None]:
    """The response body, and the Inference-Header-Content-Length when any output is binary (else None).
    JSON is written by orjson straight from the numpy arrays (float32 values in their shortest exact form).
    ``outputs`` as ``parse_infer_request`` checked them (no ``images_uint8`` for 2D points)."""
    import orjson

    entries, blobs = [], []
    for output in outputs:
        array = rows.images if output.name == "images" else rows.as_uint8()
        entry = {"name": output.name, "datatype": OUTPUTS[output.name], "shape": list(array.shape)}
        if output.binary:
            raw = np.ascontiguousarray(array, dtype="<f4" if output.name == "images" else np.uint8).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = np.ascontiguousarray(array.reshape(-1))
        entries.append(entry)
    head = orjson.dumps({**header, "outputs": entries}, option=orjson.OPT_SERIALIZE_NUMPY)
    return (head + b"".join(blobs), len(head)) if blobs else (head, None)
