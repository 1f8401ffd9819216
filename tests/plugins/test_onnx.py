"""The ONNX format plugin: exports that keep every dynamic axis, however many came before."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

import zoo
from zoo.plugins.onnx import export_onnx
from zoo.plugins.pt2 import export_program


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_the_time_axis_stays_dynamic_export_after_export(name: str, tmp_path: Path) -> None:
    """torch's exporters swap the RNN kernels without clearing their dispatch caches: before
    zoo cleared them, the second ONNX export of an LSTM in a process fixed its length."""
    spec = zoo.get_spec(name)
    model = spec.build().eval()
    example = spec.example_input(2)
    export_onnx(model, example, spec.input, tmp_path / "0.onnx", output_names=["logits"])
    export_onnx(model, example, spec.input, tmp_path / "1.onnx", output_names=["logits"])
    export_program(model, example, spec.input)  # .pt2 and AOTInductor trace it too
    export_onnx(model, example, spec.input, tmp_path / "2.onnx", output_names=["logits"])
    for i in range(3):
        session = ort.InferenceSession(str(tmp_path / f"{i}.onnx"))
        assert session.get_inputs()[0].shape == ["batch", "time"], i
        longer = spec.example_input(3).repeat(1, 3)  # 48 tokens, the example has 16
        assert session.run(None, {"tokens": longer.numpy()})[0].shape == (3, 18)
