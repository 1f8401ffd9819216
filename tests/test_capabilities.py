"""The bare models (``zoo export --raw``): every capability a spec records holds for the
model without its preprocessing, and every one it denies really fails.

Each model is exported by each portable format's registered ``Format`` and loaded back by it
in the real runtime (a TorchScript module, onnxruntime, the ExportedProgram), then compared
with eager at several batch sizes (and sequence lengths where the time axis is dynamic).
``tests/export/test_matrix.py`` does the same through ``zoo export`` with the preprocessing
bundled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import as_tuple, spec_params
from zoo._pluginmanager import get_plugins
from zoo.formats import ExportRequest
from zoo.registry import ModelSpec

ATOL, RTOL = 1e-4, 1e-4
PORTABLE = ("torchscript", "onnx", "pt2")


def _inputs(spec: ModelSpec) -> list[torch.Tensor]:
    """The example batch (2), other batches if dynamic, other lengths for a dynamic time axis."""
    inputs = [spec.example_input(2)]
    if spec.capabilities.dynamic_batch:
        inputs += [spec.example_input(1, seed=1), spec.example_input(3, seed=2)]
    for axis in spec.input.dynamic_axes:
        if axis > 0:
            for length in (1, spec.input.shape[axis - 1] * 2 + 3):
                shape = list(spec.example_input(3).shape)
                shape[axis] = length
                low, high = spec.input.value_range
                inputs.append(torch.randint(int(low), int(high) + 1, shape))
    return inputs


def _check_same_model(spec: ModelSpec, model: torch.nn.Module, run) -> None:  # type: ignore[no-untyped-def]
    for x in _inputs(spec):
        with torch.no_grad():
            expected = as_tuple(model(x))
            actual = run(x)
        assert len(actual) == len(expected)
        for name, a, e in zip([o.name for o in spec.outputs], actual, expected, strict=True):
            np.testing.assert_allclose(
                np.asarray(a),
                e.numpy(),
                atol=ATOL,
                rtol=RTOL,
                err_msg=f"{spec.name} output {name!r} at input shape {tuple(x.shape)}",
            )


@pytest.mark.parametrize("fmt", PORTABLE)
@pytest.mark.parametrize("spec", spec_params())
def test_bare_model_capability(spec: ModelSpec, fmt: str, tmp_path: Path) -> None:
    claim = spec.capabilities.works(fmt)
    if claim is None:
        pytest.skip(f"{fmt} is not measured for {spec.name}: there is no claim to check")
    format_ = get_plugins().formats.get(fmt)
    model = spec.build().eval()
    request = ExportRequest(
        module=model,
        example=spec.example_input(2),
        input=spec.input,
        output_names=tuple(o.name for o in spec.outputs),
        directory=tmp_path,
    )

    def export_and_compare() -> None:
        format_.export(request)
        _check_same_model(spec, model, format_.load(tmp_path))

    if claim:
        export_and_compare()
    else:  # any failure, to export or to match eager, confirms the record
        with pytest.raises((Exception, AssertionError)):
            export_and_compare()


def test_a_record_is_read_only_as_a_regular_file_of_bounded_size(tmp_path: Path) -> None:
    """Read as the manifest and the config are: a FIFO is refused before it is opened for a
    read that would wait for a writer, and a file beyond the bound before it is read."""
    import os

    from zoo.capabilities import MAX_RECORD_BYTES, read_record

    fifo = tmp_path / "record.json"
    os.mkfifo(fifo)
    with pytest.raises(
        ValueError, match=r"record\.json is not a capability record: .* is not a regular file"
    ):
        read_record(fifo)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_RECORD_BYTES + 1)  # sparse
    with pytest.raises(ValueError, match="more than the 16,777,216 zoo reads"):
        read_record(huge)
