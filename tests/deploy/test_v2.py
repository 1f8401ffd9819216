"""The Open Inference Protocol v2 without a server (zoo.deploy.v2): requests in JSON and in the
binary tensor data extension are read as Triton's own client writes them, checked against
the export's manifest, and answered in the form Triton's client reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.deploy.v2 import HEADER_LENGTH, ProtocolError, V2Model
from zoo.export.manifest import Manifest, TensorRecord

th = pytest.importorskip("tritonclient.http", reason="the serve extra (make test installs it)")
from tritonclient.http._utils import _get_inference_request  # noqa: E402


def _model(
    shape: tuple[int, ...] = (28, 28, 1),
    dynamic: dict[int, str] | None = None,
    dtype: str = "uint8",
    value_range: tuple[float, float] | None = None,
    outputs: tuple[TensorRecord, ...] = (TensorRecord("logits", "float32", (10,)),),
    **kwargs: int,
) -> V2Model:
    manifest = Manifest(
        model="lenet", model_args={}, weights_source="fresh weights (seed 0)", created="",
        versions={}, raw=False, postprocess="none", top_k=None, preprocessing=(),
        inputs=(TensorRecord("image", dtype, shape, dynamic or {0: "batch"}, value_range),),
        outputs=outputs, formats={}, files={},
    )  # fmt: skip
    return V2Model(manifest, **kwargs)  # type: ignore[arg-type]


def _client_request(
    x: np.ndarray, datatype: str, binary: bool, outputs: list | None = None
) -> tuple[bytes, str | None]:
    """The body and header tritonclient.http sends for ``x`` (its own request builder)."""
    tensor = th.InferInput("image", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    body, json_size = _get_inference_request(
        inputs=[tensor], request_id="7", outputs=outputs, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None,
    )  # fmt: skip
    return body, (str(json_size) if json_size is not None else None)


@pytest.mark.parametrize("binary", [True, False])
def test_a_request_from_tritons_client_round_trips(binary: bool) -> None:
    model = _model(dynamic={0: "batch", 1: "height", 2: "width"})
    x = np.random.default_rng(0).integers(0, 256, (3, 30, 20, 1), dtype=np.uint8)
    outputs = None if binary else [th.InferRequestedOutput("logits", binary_data=False)]
    body, header = _client_request(x, "UINT8", binary, outputs)
    request = model.parse(body, header)
    np.testing.assert_array_equal(request.array, x)
    assert request.id == "7" and request.binary is binary
    logits = np.arange(30, dtype=np.float32).reshape(3, 10)
    content, headers = model.response(request, [logits])
    length = headers.get(HEADER_LENGTH)
    result = th.InferResult.from_response_body(
        content, header_length=int(length) if length else None
    )
    np.testing.assert_array_equal(result.as_numpy("logits"), logits)
    assert result.get_response()["id"] == "7"
    assert (length is not None) is binary


def test_metadata_marks_dynamic_axes() -> None:
    model = _model(shape=(12,), dynamic={0: "batch", 1: "time"}, dtype="int64")
    meta = model.metadata()
    assert meta["inputs"] == [{"name": "image", "datatype": "INT64", "shape": [-1, -1]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]


def _json(tensor: dict, **request: object) -> bytes:
    return json.dumps({"inputs": [tensor], **request}).encode()


IMAGE = {"name": "image", "datatype": "UINT8", "shape": [1, 28, 28, 1]}


@pytest.mark.parametrize(
    ("body", "header", "status", "says"),
    [
        (b"{", None, 400, "not JSON"),
        (b"[1]", None, 400, "JSON object"),
        (_json({**IMAGE, "name": "x", "data": [0] * 784}), None, 400, "unknown input 'x'"),
        (_json({**IMAGE, "datatype": "FP32", "data": [0] * 784}), None, 400, "not 'FP32'"),
        (_json({**IMAGE, "shape": [1, 28, 28, 3], "data": [0] * 2352}), None, 400, "expected"),
        (_json({**IMAGE, "shape": [1, 28, 28], "data": [0] * 784}), None, 400, "expected"),
        (_json({**IMAGE, "shape": [0, 28, 28, 1], "data": []}), None, 400, "a batch of 0"),
        (_json({**IMAGE, "shape": [1, 28, 28, 1], "data": [0] * 5}), None, 400, "5 values"),
        (_json({**IMAGE, "data": [300] * 784}), None, 400, "fit UINT8"),
        (_json({**IMAGE, "data": [0.5] * 784}), None, 400, "integers"),
        (_json({**IMAGE, "shape": ["a"], "data": [0]}), None, 400, "list of sizes"),
        (_json({**IMAGE}), None, 400, "no 'data'"),
        (_json({**IMAGE, "data": [0] * 784}, outputs=[{"name": "y"}]), None, 400, "unknown output"),
        (
            _json({**IMAGE, "parameters": {"binary_data_size": 784}}) + b"\0" * 10,
            str(len(_json({**IMAGE, "parameters": {"binary_data_size": 784}}))),
            400,
            "binary data",
        ),
        (_json({**IMAGE, "data": [0] * 784}), "9999", 400, "outside the body"),
        (_json({**IMAGE, "data": [0] * 784}), "x", 400, "not a number"),
    ],
)
def test_a_bad_request_is_refused_in_one_line(
    body: bytes, header: str | None, status: int, says: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        _model().parse(body, header)
    assert caught.value.status == status
    assert says in caught.value.message and "\n" not in caught.value.message
    assert json.loads(caught.value.body()) == {"error": caught.value.message}


def test_an_oversized_request_is_refused() -> None:
    with pytest.raises(ProtocolError) as caught:
        _model(max_request_bytes=1000).parse(_json({**IMAGE, "data": [0] * 784}), None)
    assert caught.value.status == 413


def test_ids_outside_the_vocabulary_are_refused() -> None:
    model = _model(shape=(5,), dtype="int64", dynamic={0: "batch", 1: "time"}, value_range=(0, 9))
    ids = {"name": "image", "datatype": "INT64", "shape": [1, 3]}
    assert model.parse(_json({**ids, "data": [1, 2, 9]}), None).array.tolist() == [[1, 2, 9]]
    with pytest.raises(ProtocolError, match="outside 0 to 9"):
        model.parse(_json({**ids, "data": [1, 2, 10]}), None)


def test_json_nested_past_the_parsers_depth_is_refused() -> None:
    with pytest.raises(ProtocolError, match="nests too deep") as caught:
        _model().parse(b"[" * 100_000 + b"]" * 100_000, None)
    assert caught.value.status == 400


def test_a_float_input_takes_json_numbers() -> None:
    """A --raw export's input is float32: JSON numbers, ints among them, are its data."""
    model = _model(shape=(2,), dtype="float32")
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 2]}
    assert model.parse(_json(tensor), None).array.tolist() == [[0.5, 2.0]]
    with pytest.raises(ProtocolError, match="must be numbers"):
        model.parse(_json({**tensor, "data": ["a", "b"]}), None)
