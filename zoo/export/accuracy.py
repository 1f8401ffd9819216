"""The accuracy gate of ``zoo export``: every artifact against eager PyTorch on held-out data.

Tensor parity on random inputs (``zoo.export.gates``) proves an fp32 artifact computes what
eager PyTorch computes. A reduced-precision artifact (bf16, int8) never does, bit for bit:
what matters is whether it still answers as well, which only real data can say. The gate runs
eager fp32 and every artifact over the held-out test split of a dataset (by default the one
the checkpoint was trained on, split as it was: the same seed and fractions) and records the
task's metric (:attr:`zoo.Task.gate_metric`: accuracy for classifiers, the reconstruction
error for the VAE), the rate at which the artifact's predictions agree with eager's, and the
largest output difference.

- An fp32 artifact must agree with eager on every sample, but for near-ties: samples whose
  class eager scores within the parity tolerance of the artifact's (rounding may flip them).
- A reduced-precision artifact fails when its metric is more than ``max_drop`` worse than
  eager's: accuracy points (0.5: half a percentage point), or, for a metric where lower is
  better, percent of eager's value.

The inputs, the targets and eager's outputs are saved with the export (:data:`EVAL_FILE`), so
``zoo export --check`` re-runs the gate without the model or the dataset. Images are kept at
the dataset's own size as uint8 ``[N, H, W, C]``, what a deployment feeds the bundle (which
resizes them itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from zoo import _json as js
from zoo._io import atomic_path
from zoo.data import load_dataset
from zoo.datasets import DataSplits
from zoo.errors import DataError, DataMismatchError, UsageError, one_line
from zoo.export.defaults import (
    DEFAULT_ATOL,
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_MAX_DROP,
    DEFAULT_RTOL,
)
from zoo.registry import InputSpec, ModelSpec
from zoo.tasks import Task

__all__ = [
    "DEFAULT_CALIBRATION_SAMPLES",
    "DEFAULT_EVAL_SAMPLES",
    "DEFAULT_MAX_DROP",
    "EVAL_FILE",
    "MIN_CALIBRATION_SAMPLES",
    "AccuracyResult",
    "DataSource",
    "EvalData",
    "calibration_inputs",
    "check_calibration_samples",
    "check_max_drop",
    "eval_data",
    "gate_splits",
    "load_eval_data",
    "measure",
]

EVAL_FILE: Final = "eval.safetensors"
#: Fewer than this and the activation ranges are a guess: refused.
MIN_CALIBRATION_SAMPLES: Final = 16
#: Samples per call of an artifact.
BATCH: Final = 64


@dataclass(frozen=True)
class DataSource:
    """A dataset and how it was split: what a checkpoint's config says, or zoo's defaults."""

    name: str
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    data_dir: str | None = None
    #: Token datasets: the vocabulary the model was trained with (the data's must match).
    vocabulary: tuple[str, ...] | None = None

    @classmethod
    def of_checkpoint(cls, meta: dict[str, Any], name: str | None = None) -> DataSource:
        """The split the run of checkpoint ``meta`` was trained on (``name`` may name
        another dataset)."""
        config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        dataset = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}
        assert isinstance(config, dict) and isinstance(dataset, dict)
        trained_on = config.get("data") or dataset.get("name")
        vocabulary = dataset.get("vocabulary")
        if (name is not None and name != trained_on) or not isinstance(vocabulary, list):
            vocabulary = None

        def fraction(key: str) -> float:
            value = config.get(key, 0.1)
            return float(value) if isinstance(value, (int, float)) else 0.1

        seed = config.get("seed", 0)
        data_dir = config.get("data_dir")
        return cls(
            name=name or js.string(trained_on, "the checkpoint's dataset"),
            vocabulary=tuple(str(t) for t in vocabulary) if vocabulary is not None else None,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else 0,
            val_fraction=fraction("val_fraction"),
            test_fraction=fraction("test_fraction"),
            data_dir=data_dir if isinstance(data_dir, str) else None,
        )


@dataclass(frozen=True)
class EvalData:
    """What the gate runs: inputs of the exported module, the task's targets, eager's outputs."""

    dataset: str
    inputs: Tensor
    targets: Tensor
    eager: tuple[Tensor, ...]

    def nbytes(self) -> int:
        tensors = (self.inputs, self.targets, *self.eager)
        return sum(t.numel() * t.element_size() for t in tensors)

    def save(self, path: Path, output_names: Sequence[str]) -> None:
        tensors = {"inputs": self.inputs.contiguous(), "targets": self.targets.contiguous()}
        for name, output in zip(output_names, self.eager, strict=True):
            tensors[f"eager.{name}"] = output.contiguous()
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "zoo-eval", "dataset": self.dataset})


def load_eval_data(path: Path, output_names: Sequence[str], dataset: str) -> EvalData:
    """The saved gate data (safetensors: no code runs); ValueError if it is not this export's."""
    tensors = load_file(str(path))
    expected = {"inputs", "targets", *(f"eager.{n}" for n in output_names)}
    if set(tensors) != expected:
        raise ValueError(f"holds {sorted(tensors)}, not {sorted(expected)}")
    count = len(tensors["inputs"])
    if count == 0:
        raise ValueError("it holds no sample")
    if any(t.dim() == 0 or len(t) != count for t in tensors.values()):
        raise ValueError("its tensors hold different numbers of samples")
    return EvalData(
        dataset,
        tensors["inputs"],
        tensors["targets"],
        tuple(tensors[f"eager.{n}"] for n in output_names),
    )


@dataclass(frozen=True)
class AccuracyResult:
    """One artifact's gate: its metric against eager's on the same samples."""

    dataset: str
    samples: int
    metric: str
    higher_is_better: bool
    value: float
    eager: float
    #: How much worse than eager: points of accuracy, or percent of eager's value (negative:
    #: better).
    drop: float
    max_drop: float
    #: Share of samples whose predicted class is eager's (None: the task predicts none).
    agreement: float | None
    max_abs_diff: float
    #: fp32: must agree everywhere; bf16/int8: within ``max_drop``.
    precision: str
    error: str = ""
    #: The task whose metric this is (``zoo export --check`` creates it by this name).
    task: str = ""
    #: Samples whose predicted class differs from eager's where eager's choice was not a
    #: near-tie (a margin within the parity tolerance, which rounding may flip): an fp32
    #: artifact must have none. None: the task predicts no class.
    disagreements: int | None = None

    @classmethod
    def failure(
        cls, task: Task, dataset: str, samples: int, precision: str, max_drop: float, error: str
    ) -> AccuracyResult:
        """A gate that could not run (the artifact does not load or run on the data)."""
        metric, higher = task.gate_metric or ("", True)
        return cls(
            dataset, samples, metric, higher, math.nan, math.nan, math.inf, max_drop, None,
            math.inf, precision, error=error, task=task.name,
        )  # fmt: skip

    @property
    def passed(self) -> bool:
        if self.error:
            return False
        if self.precision == "fp32":
            return not self.disagreements
        return self.drop <= self.max_drop

    def why(self) -> str:
        if self.error:
            return f"accuracy gate on {self.dataset}: {self.error}"
        if self.precision == "fp32" and not self.passed:
            return (
                f"accuracy gate on {self.dataset}: an fp32 artifact must predict what eager "
                f"predicts on every sample; it differs on {self.disagreements} of "
                f"{self.samples} (near-ties aside)"
            )
        unit = "points" if self.higher_is_better else "% of eager's"
        return (
            f"accuracy gate on {self.dataset}: {self.metric} {self.value:.4f} against eager's "
            f"{self.eager:.4f}, {self.drop:.2f} {unit} worse (at most {self.max_drop:g})"
        )

    def to_dict(self) -> dict[str, Any]:
        def finite(value: float | None) -> float | None:  # JSON has no NaN or Infinity
            return value if value is not None and math.isfinite(value) else None

        data = {
            "dataset": self.dataset,
            "task": self.task,
            "samples": self.samples,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "value": finite(self.value),
            "eager": finite(self.eager),
            "drop": finite(self.drop),
            "max_drop": self.max_drop,
            "agreement": finite(self.agreement),
            "disagreements": self.disagreements,
            "max_abs_diff": finite(self.max_abs_diff),
            "precision": self.precision,
            "passed": self.passed,
        }
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_dict(cls, data: Any) -> AccuracyResult:
        data = js.obj(data, "accuracy")

        def number(key: str, missing: float = math.nan) -> float:
            value = data.get(key)
            return missing if value is None else js.number(value, f"accuracy.{key}")

        agreement = data.get("agreement")
        disagreements = data.get("disagreements")
        return cls(
            dataset=js.string(data.get("dataset"), "accuracy.dataset"),
            samples=js.integer(data.get("samples"), "accuracy.samples"),
            metric=js.string(data.get("metric"), "accuracy.metric"),
            higher_is_better=js.boolean(data.get("higher_is_better"), "accuracy.higher"),
            value=number("value"),
            eager=number("eager"),
            drop=number("drop", math.inf),
            max_drop=js.number(data.get("max_drop"), "accuracy.max_drop"),
            agreement=None if agreement is None else js.number(agreement, "accuracy.agreement"),
            max_abs_diff=number("max_abs_diff", math.inf),
            precision=js.string(data.get("precision"), "accuracy.precision"),
            error=js.string(data.get("error", ""), "accuracy.error"),
            task=js.string(data.get("task", ""), "accuracy.task"),
            disagreements=None
            if disagreements is None
            else js.integer(disagreements, "accuracy.disagreements"),
        )


def check_max_drop(value: float) -> float:
    if isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= 100:
        raise UsageError(f"--max-drop {value}: give a number of points from 0 to 100")
    return float(value)


# -- the data ---------------------------------------------------------------------------------


def gate_splits(
    spec: ModelSpec, source: DataSource, *, bundle_images: bool, download: bool = True
) -> DataSplits:
    """The dataset's splits as the exported module takes them: uint8 ``[C, H, W]`` images at
    the dataset's own size (for a bundle with preprocessing), or the model's own input. The
    gate's test split and the calibration's training split come from one load."""
    kwargs: dict[str, Any] = {
        "download": download,
        "data_dir": source.data_dir,
        "seed": source.seed,
        "val_fraction": source.val_fraction,
        "test_fraction": source.test_fraction,
    }
    try:
        if not bundle_images:
            splits = load_dataset(source.name, spec.input, **kwargs)
            here = splits.info.vocabulary
            if source.vocabulary is not None and tuple(here or ()) != source.vocabulary:
                raise DataError(
                    f"dataset {source.name!r} has another vocabulary here than the model was "
                    "trained with (its source library changed?)"
                )
            return splits
        pixels = InputSpec(spec.input.shape, dtype="uint8", value_range=(0, 255))
        splits = load_dataset(source.name, pixels, **kwargs)
        size = splits.info.image_size
        if size is not None and tuple(size) != tuple(spec.input.shape[1:]):
            native = InputSpec((spec.input.shape[0], *size), dtype="uint8", value_range=(0, 255))
            splits = load_dataset(source.name, native, **kwargs)
        return splits
    except DataMismatchError as exc:
        raise UsageError(
            f"dataset {source.name!r} cannot feed model {spec.name!r}: {exc}"
        ) from None


def _gather(dataset: Any, collate_fn: Callable[..., Any] | None, indices: list[int]) -> Any:
    items = [dataset[i] for i in indices]
    if collate_fn is not None:
        return collate_fn(items)
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def _subset(count: int, limit: int, seed: int) -> list[int]:
    if count <= limit:
        return list(range(count))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(count, generator=generator)[:limit].tolist())


def _as_module_input(x: Tensor, bundle_images: bool) -> Tensor:
    return x.permute(0, 2, 3, 1).contiguous() if bundle_images else x


def _check_classes(
    task: Task, splits: DataSplits, outputs: Sequence[Tensor], postprocess: str
) -> None:
    """A classifier's class count against the dataset's (top-k outputs say nothing of it)."""
    if type(task).gate_predictions is Task.gate_predictions or not outputs or postprocess == "topk":
        return
    classes = outputs[0].shape[-1] if outputs[0].dim() == 2 else None
    if classes is not None and splits.info.num_classes and classes != splits.info.num_classes:
        raise UsageError(
            f"eval dataset {splits.info.name!r} has {splits.info.num_classes} classes, the model "
            f"{classes}: give a dataset of the model's classes"
        )


def eval_data(
    spec: ModelSpec,
    task: Task,
    bundle: nn.Module,
    source: DataSource,
    splits: DataSplits,
    *,
    bundle_images: bool,
    run: Callable[[nn.Module, Tensor], tuple[Tensor, ...]],
    postprocess: str = "none",
    limit: int = DEFAULT_EVAL_SAMPLES,
) -> EvalData:
    """Eager's outputs on the held-out test split of ``source`` (its ``splits``: at most
    ``limit`` samples, a seeded subset), with the task's targets."""
    indices = _subset(len(splits.test), limit, source.seed)  # type: ignore[arg-type]
    if not indices:
        raise UsageError(f"dataset {source.name!r} has no test samples for the accuracy gate")
    x, y = _gather(splits.test, splits.collate_fn, indices)
    if spec.input.is_integer and x.numel() and int(x.max()) > spec.input.value_range[1]:
        raise UsageError(
            f"dataset {source.name!r} has token ids up to {int(x.max())}, beyond the model's "
            f"vocabulary (ids up to {int(spec.input.value_range[1])}): give the dataset the "
            "model was trained on"
        )
    inputs = _as_module_input(x, bundle_images)
    eager = _batched(lambda batch: run(bundle, batch), inputs)
    _check_classes(task, splits, eager, postprocess)
    preprocess = getattr(bundle, "preprocess", nn.Identity())
    with torch.no_grad():
        model_inputs = torch.cat([preprocess(b) for b in inputs.split(BATCH)])
    targets = task.gate_targets(model_inputs, y)
    return EvalData(source.name, inputs, targets, eager)


def check_calibration_samples(count: int) -> None:
    if count < MIN_CALIBRATION_SAMPLES:
        raise UsageError(
            f"--calibration-samples {count}: give at least {MIN_CALIBRATION_SAMPLES} (a few "
            f"hundred is usual; default {DEFAULT_CALIBRATION_SAMPLES})"
        )


def calibration_inputs(
    source: DataSource, splits: DataSplits, count: int, *, bundle_images: bool
) -> Tensor:
    """``count`` inputs of the exported module from the training split of ``source`` (its
    ``splits``; a seeded subset), for static quantization (``count`` checked already)."""
    available = len(splits.train)  # type: ignore[arg-type]
    if available < count:
        raise UsageError(
            f"--calibration-samples {count}: the training split of {source.name!r} has only "
            f"{available}; give at most {available}"
        )
    x, _ = _gather(splits.train, splits.collate_fn, _subset(available, count, source.seed + 1))
    return _as_module_input(x, bundle_images)


# -- measuring --------------------------------------------------------------------------------


def _batched(call: Callable[[Tensor], Sequence[Any]], inputs: Tensor) -> tuple[Tensor, ...]:
    parts: list[list[Tensor]] = []
    for batch in inputs.split(BATCH):
        outputs = [torch.as_tensor(np.asarray(o)) for o in call(batch)]
        if not parts:
            parts = [[] for _ in outputs]
        for store, output in zip(parts, outputs, strict=True):
            store.append(output)
    return tuple(torch.cat(p) for p in parts)


def measure(
    task: Task,
    data: EvalData,
    runner: Callable[[Tensor], Sequence[Any]],
    *,
    postprocess: str,
    precision: str,
    max_drop: float,
) -> AccuracyResult:
    """Run ``runner`` (a loaded artifact) over the gate data and compare it with eager. An
    artifact that does not run, or outputs that do not fit the saved data, fail the gate
    with the reason."""
    metric, higher = task.gate_metric or ("", True)
    try:
        outputs = _batched(runner, data.inputs)
        value = float(task.gate_scores(outputs, data.targets, postprocess).mean())
        eager = float(task.gate_scores(data.eager, data.targets, postprocess).mean())
        pairs = zip(outputs, data.eager, strict=True)
        diff = max((float((a.double() - b.double()).abs().max()) for a, b in pairs), default=0.0)
        mine = task.gate_predictions(outputs, postprocess)
        theirs = task.gate_predictions(data.eager, postprocess)
    except Exception as exc:  # it does not run on real data, or not as the data says
        return AccuracyResult.failure(
            task, data.dataset, len(data.inputs), precision, max_drop, one_line(exc)
        )
    if higher:
        drop = (eager - value) * 100  # points
    else:
        drop = (value - eager) / abs(eager) * 100 if eager else (math.inf if value else 0.0)
    agreement = disagreements = None
    if mine is not None and theirs is not None:
        differ = mine != theirs
        agreement = 1.0 - float(differ.float().mean())
        disagreements = int((differ & ~_near_ties(data.eager, theirs, mine, postprocess)).sum())
    return AccuracyResult(
        data.dataset, len(data.inputs), metric, higher, value, eager, drop,
        max_drop, agreement, diff, precision, task=task.name, disagreements=disagreements,
    )  # fmt: skip


#: Eager's scores of two classes this close are a near-tie that rounding may flip: the
#: parity gate's default tolerances.
TIE_ATOL, TIE_RTOL = DEFAULT_ATOL, DEFAULT_RTOL


def _near_ties(eager: Sequence[Tensor], theirs: Tensor, mine: Tensor, postprocess: str) -> Tensor:
    """Per sample: eager scored the artifact's class within the parity tolerance of its own
    (only for class scores [N, C], or top-k scores and indices)."""
    scores = eager[0].double() if eager and eager[0].is_floating_point() else None
    ties = torch.zeros(len(theirs), dtype=torch.bool)
    if scores is None or scores.dim() != 2:
        return ties
    if postprocess == "topk":  # eager's own k best: the artifact's pick may be among them
        indices = eager[1].long()
        found = indices == mine.long().unsqueeze(1)
        other = torch.where(found.any(dim=1), (scores * found).sum(dim=1), -math.inf)
        top = scores[:, 0]
    else:
        top = scores.gather(1, theirs.long().unsqueeze(1)).squeeze(1)
        other = scores.gather(1, mine.long().clamp(0, scores.shape[1] - 1).unsqueeze(1))
        other = other.squeeze(1)
    return (top - other).abs() <= TIE_ATOL + TIE_RTOL * top.abs()


# -- in a child process, for isolated formats -------------------------------------------------


def measure_artifact(
    fmt_name: str,
    directory: Path,
    model: str,
    output_names: Sequence[str],
    *,
    postprocess: str,
    max_drop: float,
    dataset: str,
    timeout: float = 600,
    isolate: bool = True,
    task_name: str = "",
    data: EvalData | None = None,
) -> AccuracyResult:
    """:func:`measure` of format ``fmt_name``'s artifact in ``directory`` on the gate data
    saved there (``data``, when the caller has it in memory already); in a child process if
    the format is ``isolated`` (a runtime that crashes fails its gate, not zoo)."""
    from zoo._pluginmanager import get_plugins

    plugins = get_plugins()
    fmt = plugins.formats.get(fmt_name)
    # The task by the name the export recorded: --check needs no model plugin.
    task = plugins.tasks.create(task_name or plugins.models.get(model).task, {})
    if fmt.isolated and isolate:
        import json
        import sys

        from zoo._process import ChildFailed, run_json_child

        command = [sys.executable, "-m", "zoo.export.accuracy", fmt_name, str(directory), model]
        command += [json.dumps(list(output_names)), postprocess, repr(max_drop), dataset]
        command += [task.name]
        try:
            return AccuracyResult.from_dict(run_json_child(command, timeout=timeout))
        except ChildFailed as exc:
            why = f"the {fmt_name} runtime {exc}"
            return AccuracyResult.failure(task, dataset, 0, fmt.precision, max_drop, why)
    if data is None:
        data = load_eval_data(directory / EVAL_FILE, output_names, dataset)
    try:
        runner = fmt.load(directory)
    except Exception as exc:
        why = f"{directory / fmt.files[0]} does not load: {one_line(exc)}"
        return AccuracyResult.failure(task, dataset, len(data.inputs), fmt.precision, max_drop, why)
    return measure(
        task, data, runner, postprocess=postprocess, precision=fmt.precision, max_drop=max_drop
    )


def _main(argv: Sequence[str]) -> None:
    import json

    fmt_name, directory, model, names, postprocess, max_drop, dataset, task_name = argv
    result = measure_artifact(
        fmt_name,
        Path(directory),
        model,
        json.loads(names),
        postprocess=postprocess,
        max_drop=float(max_drop),
        dataset=dataset,
        isolate=False,
        task_name=task_name,
    )
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
