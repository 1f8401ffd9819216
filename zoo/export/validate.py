"""The parity gate: each artifact, loaded in its real runtime, against eager PyTorch.

Inputs are batches of 1 and 3 (and, for a dynamic time axis, two sequence lengths). The inputs
and the eager outputs are saved beside the artifacts (``parity.safetensors``), so
``zoo export --check DIR`` re-verifies an export without the model or its checkpoint.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.registry import InputSpec

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "RuntimeCrash",
    "compare",
    "compare_isolated",
    "crash_reason",
    "load_fixture",
    "load_runtime",
    "parity_inputs",
    "save_fixture",
]

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


def load_runtime(fmt: str, path: Path, *, optimize: bool = False) -> Runner:
    """Load an artifact in the runtime a deployment would use; returns a runner.

    ``optimize`` applies ``torch.jit.optimize_for_inference`` to a TorchScript module after
    loading, as zoo's TorchScript runtime does.
    """
    if fmt == "torchscript":
        from zoo.export import torchscript

        module = torchscript.load(path)
        if optimize:
            module = torchscript.optimize(module)
        return _torch_runner(module)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(x: Tensor) -> tuple[np.ndarray, ...]:
            return tuple(np.asarray(o) for o in session.run(None, {name: x.numpy()}))

        return run_onnx
    if fmt == "pt2":
        return _torch_runner(torch.export.load(str(path)).module())
    if fmt == "aoti":
        from zoo.export.pt2 import load_aoti

        return _torch_runner(load_aoti(path))
    raise ValueError(f"unknown format {fmt!r}")


def _torch_runner(module: Callable[..., Any]) -> Runner:
    def run(x: Tensor) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            return _numpy(module(x))

    return run


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


def save_fixture(
    path: Path, inputs: list[torch.Tensor], expected: list[list[np.ndarray]], names: list[str]
) -> None:
    """The parity inputs and eager outputs, as safetensors (no pickle)."""
    from safetensors.torch import save_file

    from zoo._io import atomic_path

    tensors: dict[str, torch.Tensor] = {}
    for i, (x, outs) in enumerate(zip(inputs, expected, strict=True)):
        tensors[f"{i}.input"] = x.contiguous()
        for name, value in zip(names, outs, strict=True):
            tensors[f"{i}.output.{name}"] = torch.from_numpy(np.ascontiguousarray(value))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def load_fixture(path: Path, names: list[str]) -> tuple[list[torch.Tensor], list[list[np.ndarray]]]:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    count = len([k for k in tensors if k.endswith(".input")])
    inputs = [tensors[f"{i}.input"] for i in range(count)]
    expected = [[tensors[f"{i}.output.{n}"].numpy() for n in names] for i in range(count)]
    return inputs, expected


class RuntimeCrash(RuntimeError):
    """An artifact's runtime killed the process that ran it."""


def compare_isolated(
    fmt: str,
    path: Path,
    fixture: Path,
    output_names: Sequence[str],
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    timeout: float = 600,
) -> dict[str, Any]:
    """``compare`` in a child process on the saved ``fixture``; a crash raises RuntimeCrash."""
    command = [sys.executable, "-m", "zoo.export.validate", fmt, str(path), str(fixture)]
    command += [json.dumps(list(output_names)), repr(atol), repr(rtol)]
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeCrash(f"the {fmt} runtime did not finish in {timeout:.0f} s") from None
    if child.returncode != 0:
        raise RuntimeCrash(f"the {fmt} runtime {crash_reason(child.returncode, child.stderr)}")
    result: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
    return result


def crash_reason(returncode: int, stderr: str) -> str:
    """``crashed (killed by SIGABRT): <the child's last words>`` for a failed child process."""
    if returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exit status {returncode}"
    return f"crashed ({how}): {_last_words(stderr)}"


def _last_words(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:  # a C++ exception: "what():  index out of bounds ..."
        if line.startswith("what():"):
            return line.removeprefix("what():").strip()
    return lines[-1] if lines else "no message"


def _main(argv: Sequence[str]) -> None:
    fmt, path, fixture, names_json, atol, rtol = argv
    names = json.loads(names_json)
    inputs, expected = load_fixture(Path(fixture), names)
    result = compare(
        load_runtime(fmt, Path(path)), inputs, expected, names, float(atol), float(rtol)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
