"""The Open Inference Protocol (KServe v2, spoken by Triton and KServe) for one export, with
no server in it: what ``zoo serve``'s replicas answer, testable without one.

- ``GET /v2/health/live``, ``/v2/health/ready``: 200 while the server is up and ready.
- ``GET /v2``: the server's metadata (name, version, extensions).
- ``GET /v2/models/NAME[/versions/1]``: the model's metadata (inputs and outputs: name,
  datatype, shape with -1 for a dynamic axis); ``.../ready``: 200 once it is loaded.
- ``POST /v2/models/NAME[/versions/1]/infer``: a request's inputs in JSON (``data``, flat or
  nested, row-major) or in the binary tensor data extension (a JSON header of
  ``Inference-Header-Content-Length`` bytes, then each input's raw little-endian bytes,
  ``parameters.binary_data_size`` each): what Triton's own client (``tritonclient.http``)
  sends by default. The outputs come back in binary when the request asks for it
  (``binary_data_output``, or ``binary_data`` on an output), else in JSON.

Every request is checked before it reaches the model: its size (``max_request_bytes``),
its input's name, datatype and shape against the export's manifest (batch axis first, fixed
axes equal, dynamic axes within bounds, at most ``max_batch`` samples): a bad one gets a 4xx
and a one-line ``{"error": ...}``, and the server goes on serving.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo._version import __version__
from zoo.export.manifest import Manifest, TensorRecord

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "MAX_REQUEST_BATCH",
    "MAX_REQUEST_BYTES",
    "InferRequest",
    "ProtocolError",
    "V2Model",
]

#: v2 datatype -> NumPy dtype (little-endian, as the binary extension sends them).
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_DATATYPE_OF = {np.dtype(v).name: k for k, v in DATATYPES.items()}
#: The binary tensor data extension's header: the length of the JSON part of the body.
HEADER_LENGTH = "Inference-Header-Content-Length"
#: A request body larger than this is refused unread (413): 16 MiB holds 16 RGB images of
#: 224x224 as JSON numbers, or a hundred in binary; a JSON body of it parses into a few
#: hundred MB of Python lists at most.
MAX_REQUEST_BYTES = 16 * 2**20
#: Samples one request may carry (its batch axis); batching across requests is the server's.
MAX_REQUEST_BATCH = 256


class ProtocolError(Exception):
    """A request the server refuses: an HTTP status (4xx) and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> bytes:
        return json.dumps({"error": self.message}).encode()


@dataclass
class InferRequest:
    """One checked infer request: its input as an array of ``[B, ...]``, and how to answer."""

    array: np.ndarray
    id: str | None = None
    #: The outputs asked for, by name, each with whether it goes back in binary; empty: all
    #: outputs, in binary when ``binary`` is set.
    outputs: list[tuple[str, bool]] = field(default_factory=list)
    binary: bool = False


def _datatype(dtype: str) -> str:
    """The v2 datatype of a NumPy or manifest dtype name."""
    name = np.dtype(dtype).name
    if name not in _DATATYPE_OF:
        raise ValueError(f"no v2 datatype for {dtype}")
    return _DATATYPE_OF[name]


class V2Model:
    """One export as a v2 model: its metadata, and its infer requests checked and answered."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        name: str | None = None,
        platform: str = "zoo",
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_batch: int = MAX_REQUEST_BATCH,
    ) -> None:
        if len(manifest.inputs) != 1:
            raise ValueError(f"{manifest.model}: zoo serves models of one input")
        self.manifest = manifest
        self.name = name or manifest.model
        self.version = "1"
        self.platform = platform
        self.max_request_bytes = max_request_bytes
        self.max_batch = max_batch
        self.input: TensorRecord = manifest.inputs[0]
        self.input_datatype = _datatype(self.input.dtype)
        self.dtype = np.dtype(DATATYPES[self.input_datatype])

    # -- metadata -------------------------------------------------------------------------------

    def _shape(self, entry: TensorRecord) -> list[int]:
        dynamic = set(entry.dynamic_axes)  # axes of the batched tensor: 0 is the batch
        return [-1] + [-1 if i + 1 in dynamic else int(d) for i, d in enumerate(entry.shape)]

    def metadata(self) -> dict[str, Any]:
        """``GET /v2/models/NAME``."""
        outputs = []
        for entry in self.manifest.outputs:
            outputs.append(
                {
                    "name": entry.name,
                    "datatype": _datatype(entry.dtype),
                    "shape": [-1, *(int(d) for d in entry.shape)],
                }
            )
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [
                {
                    "name": self.input.name,
                    "datatype": self.input_datatype,
                    "shape": self._shape(self.input),
                }
            ],
            "outputs": outputs,
        }

    @staticmethod
    def server_metadata() -> dict[str, Any]:
        """``GET /v2``."""
        return {"name": "zoo", "version": __version__, "extensions": ["binary_tensor_data"]}

    # -- requests -------------------------------------------------------------------------------

    def parse(self, body: bytes, header_length: str | None) -> InferRequest:
        """The infer request in ``body`` (``header_length``: the binary extension's header, if
        sent), checked against the export; ProtocolError (400) naming what is wrong."""
        if len(body) > self.max_request_bytes:
            raise ProtocolError(
                413, f"request of {len(body):,} bytes, over {self.max_request_bytes:,}"
            )
        if header_length is not None:
            try:
                split = int(header_length)
            except ValueError:
                raise ProtocolError(
                    400, f"{HEADER_LENGTH} is not a number: {header_length!r}"
                ) from None
            if not 0 < split <= len(body):
                raise ProtocolError(
                    400, f"{HEADER_LENGTH} {split} is outside the body's {len(body)} bytes"
                )
            head, binary = body[:split], body[split:]
        else:
            head, binary = body, b""
        try:
            request = json.loads(head)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(400, f"the request is not JSON ({exc})") from None
        except RecursionError:
            raise ProtocolError(400, "the request's JSON nests too deep") from None
        if not isinstance(request, dict):
            raise ProtocolError(400, "the request must be a JSON object with 'inputs'")
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise ProtocolError(
                400, f"'inputs' must hold one tensor, {self.input.name!r} ({self.input_datatype})"
            )
        array = self._tensor(inputs[0], binary)
        parameters = request.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ProtocolError(400, "'parameters' must be an object")
        ident = request.get("id")
        if ident is not None and not isinstance(ident, str):
            raise ProtocolError(400, "'id' must be a string")
        return InferRequest(
            array,
            id=ident,
            outputs=self._requested(request.get("outputs")),
            binary=parameters.get("binary_data_output") is True,
        )

    def _tensor(self, tensor: dict[str, Any], binary: bytes) -> np.ndarray:
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if name != self.input.name:
            raise ProtocolError(
                400, f"unknown input {name!r}: {self.name} takes {self.input.name!r}"
            )
        if datatype != self.input_datatype:
            raise ProtocolError(400, f"input {name!r} is {self.input_datatype}, not {datatype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ProtocolError(400, f"input {name!r}: 'shape' must be a list of sizes")
        self._check_shape(shape)
        count = math.prod(shape)
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            expected = count * self.dtype.itemsize
            if size != expected or len(binary) != size:
                raise ProtocolError(
                    400,
                    f"input {name!r}: {len(binary) if size == expected else size} bytes of "
                    f"binary data for shape {shape} of {datatype} ({expected} bytes)",
                )
            return self._check_values(np.frombuffer(binary, dtype=self.dtype).reshape(shape))
        if binary:
            raise ProtocolError(400, "binary data after the header, but no binary_data_size")
        data = tensor.get("data")
        if data is None:
            raise ProtocolError(400, f"input {name!r} has no 'data'")
        try:
            flat = np.asarray(data)
        except ValueError:
            raise ProtocolError(400, f"input {name!r}: 'data' is ragged") from None
        if flat.size != count:
            raise ProtocolError(
                400, f"input {name!r}: {flat.size} values for shape {shape} ({count})"
            )
        if self.dtype.kind == "f":
            if flat.dtype.kind not in "iuf":
                raise ProtocolError(400, f"input {name!r}: 'data' must be numbers")
        elif flat.dtype.kind not in "iub" or (flat.size and not self._fits(flat)):
            raise ProtocolError(400, f"input {name!r}: 'data' must be integers that fit {datatype}")
        return self._check_values(flat.astype(self.dtype).reshape(shape))

    def _fits(self, values: np.ndarray) -> bool:
        info = np.iinfo(self.dtype)
        return bool(values.min() >= info.min and values.max() <= info.max)

    def _check_shape(self, shape: list[int]) -> None:
        entry = self.input
        want = self._shape(entry)
        if len(shape) != len(want):
            raise ProtocolError(
                400, f"input {entry.name!r}: shape {shape}, expected {want} (-1: any size)"
            )
        if not 1 <= shape[0] <= self.max_batch:
            raise ProtocolError(
                400, f"input {entry.name!r}: a batch of {shape[0]}, expected 1 to {self.max_batch}"
            )
        for got, fixed in zip(shape[1:], want[1:], strict=True):
            if got < 1 or (fixed != -1 and got != fixed):
                raise ProtocolError(
                    400, f"input {entry.name!r}: shape {shape}, expected {want} (-1: any size)"
                )

    def _check_values(self, array: np.ndarray) -> np.ndarray:
        """Token ids within the vocabulary (the manifest's value range): an id outside it
        would index past the model's embedding table."""
        bounds = self.input.value_range
        if bounds is not None and self.dtype.kind in "iu" and array.size:
            low, high = array.min(), array.max()
            if low < bounds[0] or high > bounds[1]:
                raise ProtocolError(
                    400,
                    f"input {self.input.name!r}: values from {low} to {high}, outside "
                    f"{bounds[0]:g} to {bounds[1]:g}",
                )
        return array

    def _requested(self, outputs: Any) -> list[tuple[str, bool]]:
        if outputs is None:
            return []
        names = [o.name for o in self.manifest.outputs]
        if not isinstance(outputs, list):
            raise ProtocolError(400, "'outputs' must be a list")
        wanted = []
        for output in outputs:
            if not isinstance(output, dict) or output.get("name") not in names:
                got = output.get("name") if isinstance(output, dict) else output
                raise ProtocolError(
                    400, f"unknown output {got!r}: {self.name} has {', '.join(names)}"
                )
            params = output.get("parameters") or {}
            wanted.append(
                (output["name"], isinstance(params, dict) and params.get("binary_data") is True)
            )
        return wanted

    # -- responses ------------------------------------------------------------------------------

    def response(
        self, request: InferRequest, outputs: list[np.ndarray]
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers answering ``request`` with the model's ``outputs`` (arrays in
        the manifest's output order, the request's batch first)."""
        names = [o.name for o in self.manifest.outputs]
        wanted = request.outputs or [(n, request.binary) for n in names]
        tensors: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for name, binary in wanted:
            array = np.ascontiguousarray(outputs[names.index(name)])
            datatype = _datatype(array.dtype.name)
            array = array.astype(DATATYPES[datatype], copy=False)
            tensor: dict[str, Any] = {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
            }
            if binary:
                blob = array.tobytes()
                tensor["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                tensor["data"] = array.reshape(-1).tolist()
            tensors.append(tensor)
        answer: dict[str, Any] = {
            "model_name": self.name,
            "model_version": self.version,
            "outputs": tensors,
        }
        if request.id is not None:
            answer["id"] = request.id
        head = json.dumps(answer).encode()
        if not blobs:
            return head, {"content-type": "application/json"}
        return head + b"".join(blobs), {
            "content-type": "application/octet-stream",
            HEADER_LENGTH: str(len(head)),
        }
