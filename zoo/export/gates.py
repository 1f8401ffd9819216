"""The parity gate: each artifact, loaded by its format in its real runtime, against eager
PyTorch.

Inputs are batches of 1 and 3 (and, for dynamic axes beyond the batch, a smaller and a larger
size on each). The inputs and the eager outputs are saved beside the artifacts
(``parity.safetensors``), so ``zoo export --check DIR`` re-verifies an export without the model
or its checkpoint. A format marked ``isolated`` is checked in a child process
(``python -m zoo.export.gates``): if its native code crashes, that format fails, not zoo.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from zoo import _json as js
from zoo._io import atomic_path
from zoo._pluginmanager import get_plugins
from zoo._process import ChildFailed, run_json_child
from zoo.errors import one_line
from zoo.export.defaults import DEFAULT_ATOL, DEFAULT_RTOL
from zoo.formats import Format, Runner
from zoo.registry import InputSpec

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "PARITY_FILE",
    "InputCheck",
    "OutputCheck",
    "ParityResult",
    "RuntimeCrash",
    "compare",
    "gate",
    "load_fixture",
    "parity_inputs",
    "save_fixture",
]

#: The inputs and eager outputs of the gate, saved in every export directory.
PARITY_FILE = "parity.safetensors"


@dataclass(frozen=True)
class OutputCheck:
    """One output of one input: the largest differences, and whether they are in tolerance."""

    ok: bool
    max_abs: float | None = None
    max_rel: float | None = None
    #: Why there are no differences to show (a shape mismatch).
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok}
        if self.error:
            data["error"] = self.error
        else:
            data.update(max_abs=self.max_abs, max_rel=self.max_rel)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> OutputCheck:
        data = js.obj(data, "an output check")
        diffs = [data.get(k) for k in ("max_abs", "max_rel")]
        max_abs, max_rel = (None if d is None else js.number(d, "a difference") for d in diffs)
        return cls(
            ok=js.boolean(data.get("ok"), "ok"),
            max_abs=max_abs,
            max_rel=max_rel,
            error=js.string(data.get("error", ""), "error"),
        )


@dataclass(frozen=True)
class InputCheck:
    """One parity input: each output's check, or why the artifact could not run it."""

    input_shape: tuple[int, ...]
    outputs: Mapping[str, OutputCheck] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(o.ok for o in self.outputs.values())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input_shape": list(self.input_shape)}
        if self.error:
            data["error"] = self.error
        else:
            data["outputs"] = {name: o.to_dict() for name, o in self.outputs.items()}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> InputCheck:
        data = js.obj(data, "a parity check")
        shape = js.seq(data.get("input_shape"), "input_shape")
        outputs = js.obj(data.get("outputs", {}), "outputs")
        return cls(
            input_shape=tuple(js.integer(d, "input_shape") for d in shape),
            outputs={k: OutputCheck.from_dict(v) for k, v in outputs.items()},
            error=js.string(data.get("error", ""), "error"),
        )


@dataclass(frozen=True)
class ParityResult:
    """An artifact against eager PyTorch on every parity input (and each of its format's
    other ways of loading it, ``variants``: all must pass)."""

    passed: bool
    atol: float
    rtol: float
    checks: tuple[InputCheck, ...]
    #: Variant name (TorchScript: ``optimized``) -> its own result.
    variants: Mapping[str, ParityResult] = field(default_factory=dict)

    def why(self) -> str:
        """What failed, in one line: the largest difference, or the first error."""
        for name, result in [("", self), *self.variants.items()]:
            where = f" ({name})" if name else ""
            for check in result.checks:
                if check.error:
                    return f"parity failed at input {list(check.input_shape)}{where}: {check.error}"
            worst = [
                (o.max_abs if o.max_abs is not None else float("inf"), out, check, o)
                for check in result.checks
                for out, o in check.outputs.items()
                if not o.ok
            ]
            if worst:
                diff, out, check, o = max(worst, key=lambda w: w[0])
                what = o.error or f"differs by up to {diff:.2e}"
                return f"parity failed: {out} {what} at input {list(check.input_shape)}{where}"
        return "" if self.passed else "parity failed"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "checks": [c.to_dict() for c in self.checks],
        }
        if self.variants:
            data["variants"] = {name: v.to_dict() for name, v in self.variants.items()}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ParityResult:
        data = js.obj(data, "a parity result")
        variants = js.obj(data.get("variants", {}), "variants")
        return cls(
            passed=js.boolean(data.get("passed"), "passed"),
            atol=js.number(data.get("atol"), "atol"),
            rtol=js.number(data.get("rtol"), "rtol"),
            checks=tuple(InputCheck.from_dict(c) for c in js.seq(data.get("checks"), "checks")),
            variants={k: cls.from_dict(v) for k, v in variants.items()},
        )


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


def compare(
    run: Runner,
    inputs: Sequence[Tensor],
    expected: Sequence[Sequence[np.ndarray]],
    output_names: Sequence[str],
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ParityResult:
    """Run every input; per output, the max abs/rel difference and whether it is in tolerance."""
    checks: list[InputCheck] = []
    for x, want in zip(inputs, expected, strict=True):
        shape = tuple(x.shape)
        try:
            got = run(x)
        except Exception as exc:
            checks.append(InputCheck(shape, error=one_line(exc)))
            continue
        if len(got) != len(want):
            checks.append(InputCheck(shape, error=f"{len(got)} outputs, expected {len(want)}"))
            continue
        outputs: dict[str, OutputCheck] = {}
        for name, g, w in zip(output_names, got, want, strict=True):
            if g.shape != w.shape:
                outputs[name] = OutputCheck(False, error=f"shape {g.shape} != {w.shape}")
                continue
            diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
            rel = diff / np.maximum(np.abs(w.astype(np.float64)), 1e-12)
            outputs[name] = OutputCheck(
                ok=bool(np.all(diff <= atol + rtol * np.abs(w))),
                max_abs=float(diff.max(initial=0.0)),
                max_rel=float(rel.max(initial=0.0)),
            )
        checks.append(InputCheck(shape, outputs))
    return ParityResult(all(c.ok for c in checks), atol, rtol, tuple(checks))


def save_fixture(
    path: Path, inputs: list[Tensor], expected: list[list[np.ndarray]], names: list[str]
) -> None:
    """The parity inputs and eager outputs, as safetensors (no pickle)."""
    tensors: dict[str, Tensor] = {}
    for i, (x, outs) in enumerate(zip(inputs, expected, strict=True)):
        tensors[f"{i}.input"] = x.contiguous()
        for name, value in zip(names, outs, strict=True):
            tensors[f"{i}.output.{name}"] = torch.from_numpy(np.ascontiguousarray(value))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def load_fixture(path: Path, names: Sequence[str]) -> tuple[list[Tensor], list[list[np.ndarray]]]:
    """The inputs and expected outputs :func:`save_fixture` wrote."""
    tensors = load_file(str(path))
    count = len([k for k in tensors if k.endswith(".input")])
    try:
        inputs = [tensors[f"{i}.input"] for i in range(count)]
        expected = [[tensors[f"{i}.output.{n}"].numpy() for n in names] for i in range(count)]
    except KeyError as exc:
        raise ValueError(f"{path} lacks tensor {exc}: it is not this export's fixture") from None
    return inputs, expected


class RuntimeCrash(RuntimeError):
    """An artifact's runtime killed the process that ran it."""


def gate(
    fmt: Format,
    directory: Path,
    output_names: Sequence[str],
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    *,
    timeout: float = 600,
) -> ParityResult:
    """Parity of ``fmt``'s artifact in ``directory`` on the fixture saved there, as loaded and
    in each of the format's variants; in a child process if the format is ``isolated``
    (RuntimeCrash if that child dies)."""
    if fmt.isolated:
        return _gate_in_child(fmt, directory, output_names, atol, rtol, timeout)
    inputs, expected = load_fixture(directory / PARITY_FILE, output_names)
    return _gate_here(fmt, directory, inputs, expected, output_names, atol, rtol)


def _gate_here(
    fmt: Format,
    directory: Path,
    inputs: list[Tensor],
    expected: list[list[np.ndarray]],
    names: Sequence[str],
    atol: float,
    rtol: float,
) -> ParityResult:
    result = compare(fmt.load(directory), inputs, expected, names, atol, rtol)
    variants = {
        variant: compare(fmt.load(directory, variant), inputs, expected, names, atol, rtol)
        for variant in fmt.variants
    }
    return replace(
        result,
        passed=result.passed and all(v.passed for v in variants.values()),
        variants=variants,
    )


def _gate_in_child(
    fmt: Format,
    directory: Path,
    names: Sequence[str],
    atol: float,
    rtol: float,
    timeout: float,
) -> ParityResult:
    command = [sys.executable, "-m", "zoo.export.gates", fmt.name, str(directory)]
    command += [json.dumps(list(names)), repr(atol), repr(rtol)]
    try:
        return ParityResult.from_dict(run_json_child(command, timeout=timeout))
    except ChildFailed as exc:
        raise RuntimeCrash(f"the {fmt.name} runtime {exc}") from None


def _main(argv: Sequence[str]) -> None:
    name, directory, names_json, atol, rtol = argv
    names = json.loads(names_json)
    fmt = get_plugins().formats.get(name)
    inputs, expected = load_fixture(Path(directory) / PARITY_FILE, names)
    result = _gate_here(fmt, Path(directory), inputs, expected, names, float(atol), float(rtol))
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    _main(sys.argv[1:])
