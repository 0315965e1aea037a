"""The strict KServe v2 parser: every malformed request is a BadRequest, never another exception."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganforge.latents import latents_for_seeds
from ganforge.serve.http.protocol import BadRequest, decode_body, parse_infer_request
from ganforge.serve.runtime.latent_space import LatentSpace

Z_DIM, MAX_BATCH = 4, 8
SPACE = LatentSpace(Z_DIM, (0.25, 0.25, 0.25, 0.25))  # a conditional generator's: 4 classes read from z0


def seed_body(data, datatype="INT64", shape=None):
    shape = [len(data)] if shape is None else shape
    return {"inputs": [{"name": "seed", "datatype": datatype, "shape": shape, "data": data}]}


@pytest.mark.parametrize("body, message", [
    (seed_body([2**63]), "0..9223372036854775807"),  # beyond int64
    (seed_body([2**31], "INT32"), "0..2147483647 for INT32"),
    (seed_body([1.5]), "JSON integers"),
    (seed_body(["1"]), "JSON integers"),
    (seed_body([True]), "JSON integers"),
    (seed_body([-1]), "0.."),
    (seed_body([[1]]), "JSON integers"),
    ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 1e400]}]}, "finite"),
    ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 1e39]}]}, "finite"),
    ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 10**400]}]}, "finite"),
    ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, None]}]}, "JSON numbers"),
    ({**seed_body([1]), "parameters": [1]}, "'parameters' must be a JSON object"),
    ({**seed_body([1]), "outputs": {"name": "images"}}, "'outputs' must be a list"),
    ({**seed_body([1]), "outputs": [{"parameters": 3}]}, "output's 'parameters'"),
    ({"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [1], "parameters": "x"}]},
     "input's 'parameters'"),
    ({**seed_body([1]), "id": 5}, "'id' must be a string"),
    (seed_body([1], shape=[True]), "shape must be a list"),
    (seed_body(list(range(9))), "1..8 seeds"),
    ({"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1]}]}, "'data' as a JSON list"),
    ({**seed_body([1]), "parameters": {"truncation": 0}}, "truncation psi must be in (0, 1]"),
    ({**seed_body([1]), "parameters": {"truncation": "0.5"}}, "'truncation' must be a number"),
    ({**seed_body([1]), "parameters": {"class": 4}}, "out of range: this model has classes 0..3"),
    ({**seed_body([1]), "parameters": {"class": [1, 2]}}, "draws 1 classes per sample"),
    ({**seed_body([1]), "parameters": {"class": "1"}}, "'class' must be an integer"),
    ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}],
      "parameters": {"truncation": 0.5}}, "apply to seed inputs"),
])
def test_malformed_requests_are_bad_requests(body, message):
    with pytest.raises(BadRequest, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_infer_request(body, SPACE, MAX_BATCH)


def test_requests_name_their_outputs_and_2d_models_have_no_uint8_images():
    body = {**seed_body([1]), "parameters": {"binary_data_output": True},
            "outputs": [{"name": "images_uint8"}, {"name": "images", "parameters": {"binary_data": False}}]}
    request = parse_infer_request(body, SPACE, MAX_BATCH)
    assert [(o.name, o.binary) for o in request.outputs] == [("images_uint8", True), ("images", False)]
    assert [o.name for o in parse_infer_request(seed_body([1]), SPACE, MAX_BATCH).outputs] == ["images"]
    with pytest.raises(BadRequest, match="'images_uint8' is for image models"):
        parse_infer_request(body, SPACE, MAX_BATCH, points=True)


def test_nested_json_and_binary_tensors_are_accepted():
    z = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    nested = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [2, 4], "data": z.tolist()}]}
    assert np.array_equal(parse_infer_request(nested, SPACE, MAX_BATCH).z, z)
    binary = {"inputs": [{"name": "seed", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}}]}
    seeds = np.array([3, 9], "<i4").tobytes()
    assert np.array_equal(parse_infer_request(binary, SPACE, MAX_BATCH, seeds).z, latents_for_seeds([3, 9], Z_DIM))


def test_seed_requests_carry_truncation_and_class_as_sampling_does():
    body = {**seed_body([3, 9]), "parameters": {"truncation": 0.5, "class": 2}}
    expected = SPACE.latents([3, 9], SPACE.controls(0.5, (2,)))
    assert np.array_equal(parse_infer_request(body, SPACE, MAX_BATCH).z, expected)
    with pytest.raises(BadRequest, match="no classes to choose"):
        parse_infer_request({**seed_body([3]), "parameters": {"class": 0}}, LatentSpace(Z_DIM), MAX_BATCH)


def test_deep_json_and_bad_bytes_are_bad_requests():
    for raw in (b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"[1, 2]", b'{"a": NaN'):
        with pytest.raises(BadRequest):
            decode_body(raw, None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30)
tensors = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["seed", "z", "x"]) | json_values,
    "datatype": st.sampled_from(["INT64", "INT32", "FP32", "BOOL"]) | json_values,
    "shape": st.lists(st.integers(-1, 10), max_size=3) | json_values,
    "data": st.lists(st.integers(-3, 2**64) | st.floats(), max_size=40) | json_values,
    "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 80) | json_values})
    | json_values})
bodies = st.fixed_dictionaries({}, optional={
    "inputs": st.lists(tensors, min_size=0, max_size=2) | json_values, "outputs": json_values,
    "parameters": st.fixed_dictionaries({}, optional={"truncation": json_values, "class": json_values}) | json_values,
    "id": json_values})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, binary=st.binary(max_size=80))
def test_fuzzed_requests_parse_or_raise_bad_request_only(body, binary):
    try:
        z = parse_infer_request(body, SPACE, MAX_BATCH, binary).z
    except BadRequest:
        return
    assert z.dtype == np.float32 and z.ndim == 2 and z.shape[1] == Z_DIM and 1 <= len(z) <= MAX_BATCH
    assert np.isfinite(z).all()


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzzed_bodies_decode_or_raise_bad_request_only(raw):
    try:
        body, _ = decode_body(raw, None)
    except BadRequest:
        return
    assert isinstance(body, dict)
