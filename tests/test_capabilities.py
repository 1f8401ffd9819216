"""The bare models (``zoo export --raw``): every capability a spec records holds for the
model without its preprocessing, and every one it denies really fails.

Each model is exported with zoo's exporters and run in the real runtime (a TorchScript
module, onnxruntime, the ExportedProgram), then compared with eager at several batch sizes
(and sequence lengths where the time axis is dynamic). ``tests/export/test_matrix.py`` does
the same through ``zoo export`` with the preprocessing bundled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.helpers import as_tuple, spec_params
from zoo.export import onnx as zoo_onnx
from zoo.export import pt2, torchscript
from zoo.registry import ModelSpec

ATOL, RTOL = 1e-4, 1e-4


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


def _claim(spec: ModelSpec, capability: str) -> bool:
    return bool(getattr(spec.capabilities, capability))


@pytest.mark.parametrize("spec", spec_params())
def test_torchscript_capability(spec: ModelSpec) -> None:
    model = spec.build().eval()
    if not _claim(spec, "scriptable"):
        with pytest.raises(Exception):  # noqa: B017 - any TorchScript failure confirms the claim
            torchscript.script(model)
        return
    try:
        scripted = torchscript.script(model)
    except Exception:  # zoo export falls back to tracing, and so does this test
        scripted = torchscript.trace(model, spec.example_input(2))
    _check_same_model(spec, model, lambda x: tuple(t.numpy() for t in as_tuple(scripted(x))))


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


@pytest.mark.parametrize("spec", spec_params())
def test_pt2_capability(spec: ModelSpec, tmp_path: Path) -> None:
    model = spec.build().eval()
    example = spec.example_input(2)
    if not _claim(spec, "pt2"):
        with pytest.raises(Exception):  # noqa: B017
            pt2.export_program(model, example, spec.input)
        return
    if not _claim(spec, "dynamic_batch"):
        with pytest.raises(Exception):  # noqa: B017
            pt2.export_program(model, example, spec.input, dynamic=True)
    program = pt2.export_program(model, example, spec.input, dynamic=_claim(spec, "dynamic_batch"))
    loaded = pt2.load(pt2.save(program, tmp_path / f"{spec.name}.pt2")).module()
    _check_same_model(spec, model, lambda x: tuple(t.numpy() for t in as_tuple(loaded(x))))


@pytest.mark.parametrize("spec", spec_params())
def test_onnx_capability(spec: ModelSpec, tmp_path: Path) -> None:
    model = spec.build().eval()
    example = spec.example_input(2)
    path = tmp_path / f"{spec.name}.onnx"
    names = [o.name for o in spec.outputs]
    if not _claim(spec, "onnx"):
        with pytest.raises(Exception):  # noqa: B017
            zoo_onnx.export_onnx(model, example, spec.input, path, output_names=names)
        return
    zoo_onnx.export_onnx(
        model,
        example,
        spec.input,
        path,
        output_names=names,
        dynamic=spec.capabilities.dynamic_batch,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == names
    _check_same_model(spec, model, lambda x: tuple(session.run(None, {spec.input.name: x.numpy()})))
