"""The parity gate: each artifact, loaded in its real runtime, against eager PyTorch.

Inputs are batches of 1 and 3 (and, for a dynamic time axis, two sequence lengths). The inputs
and the eager outputs are saved beside the artifacts (``parity.safetensors``), so
``zoo export --check DIR`` re-verifies an export without the model or its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.registry import InputSpec

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "compare", "load_runtime", "parity_inputs"]

#: Defaults of the gate; float32 graphs that fuse or reorder ops differ by ~1e-6 here.
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3

Runner = Callable[[Tensor], tuple[np.ndarray, ...]]


def parity_inputs(spec: InputSpec, seed: int = 0) -> list[Tensor]:
    """Batches of 1 and 3; where other axes are dynamic (time, height, width), each batch at
    a smaller and a larger size than the example's."""
    axes = [axis for axis in spec.dynamic_axes if axis > 0]
    shapes = [spec.shape]
    if axes:
        small, large = list(spec.shape), list(spec.shape)
        for axis in axes:
            small[axis - 1] = max(1, spec.shape[axis - 1] // 2 - 1)
            large[axis - 1] = spec.shape[axis - 1] * 2 + 3
        shapes = [tuple(small), tuple(large)]
    return [
        replace(spec, shape=shape).example(batch, seed=seed + 10 * i + j)
        for i, batch in enumerate((1, 3))
        for j, shape in enumerate(shapes)
    ]


def load_runtime(fmt: str, path: Path) -> Runner:
    """Load an artifact in the runtime a deployment would use; returns a runner."""
    if fmt == "torchscript":
        from zoo.export.torchscript import load

        module = load(path)

        def run_ts(x: Tensor) -> tuple[np.ndarray, ...]:
            with torch.no_grad():
                return _numpy(module(x))

        return run_ts
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(x: Tensor) -> tuple[np.ndarray, ...]:
            return tuple(np.asarray(o) for o in session.run(None, {name: x.numpy()}))

        return run_onnx
    if fmt == "pt2":
        program = torch.export.load(str(path)).module()

        def run_pt2(x: Tensor) -> tuple[np.ndarray, ...]:
            with torch.no_grad():
                return _numpy(program(x))

        return run_pt2
    raise ValueError(f"unknown format {fmt!r}")


def _numpy(out: Any) -> tuple[np.ndarray, ...]:
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    return tuple(o.detach().cpu().numpy() for o in outs)


def compare(
    run: Runner,
    inputs: Sequence[Tensor],
    expected: Sequence[Sequence[np.ndarray]],
    output_names: Sequence[str],
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> dict[str, Any]:
    """Run every input; per output, the max abs/rel difference and whether it is in tolerance."""
    checks: list[dict[str, Any]] = []
    passed = True
    for x, want in zip(inputs, expected, strict=True):
        try:
            got = run(x)
        except Exception as exc:
            checks.append({"input_shape": list(x.shape), "error": f"{type(exc).__name__}: {exc}"})
            passed = False
            continue
        outputs: dict[str, Any] = {}
        if len(got) != len(want):
            checks.append(
                {
                    "input_shape": list(x.shape),
                    "error": f"{len(got)} outputs, expected {len(want)}",
                }
            )
            passed = False
            continue
        for name, g, w in zip(output_names, got, want, strict=True):
            if g.shape != w.shape:
                outputs[name] = {"ok": False, "error": f"shape {g.shape} != {w.shape}"}
                passed = False
                continue
            diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
            rel = diff / np.maximum(np.abs(w.astype(np.float64)), 1e-12)
            ok = bool(np.all(diff <= atol + rtol * np.abs(w)))
            outputs[name] = {
                "ok": ok,
                "max_abs": float(diff.max(initial=0.0)),
                "max_rel": float(rel.max(initial=0.0)),
            }
            passed = passed and ok
        checks.append({"input_shape": list(x.shape), "outputs": outputs})
    return {"passed": passed, "atol": atol, "rtol": rtol, "checks": checks}
