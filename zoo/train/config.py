"""The training configuration: one dataclass, validated, loadable from TOML/YAML/JSON files.

Every field is a ``zoo train`` option of the same name (``batch_size`` is ``--batch-size``);
a config file uses the same names, with ``-`` or ``_``. The resolved configuration is saved
in the run directory as ``config.json``, which ``--config`` reads back.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import InvalidArgumentsError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# No torch import here: the CLI reads these choices to build `zoo train --help`.

__all__ = ["OPTIMIZERS", "SCHEDULERS", "TrainConfig", "load_config_file"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "multistep", "exponential", "cosine", "cosine-restarts", "plateau")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTATIONS = ("shift", "none")
#: Options of zoo 0.1 that became the VAE task's: old name -> (task option, its default).
_LEGACY_TASK_OPTIONS = {"vae_loss": ("loss", "elbo"), "kld_weight": ("kld_weight", 1.0)}


@dataclass
class TrainConfig:
    """What to train, on what, and how. Defaults train LeNet-sized models well on mnist5k."""

    model: str
    #: Dataset name (``zoo datasets``); empty picks ``mnist5k`` for images, ``names`` for tokens.
    data: str = ""
    #: Builder options of the model (``--arg KEY=VALUE``).
    model_args: dict[str, Any] = field(default_factory=dict)
    #: Options of the model's task (``--task-arg KEY=VALUE``; ``zoo tasks`` lists them).
    task_args: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    #: SGD momentum (the notes use 0.5 or 0.9).
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: Clip the gradient norm to this value (``None``: no clipping).
    grad_clip: float | None = None
    scheduler: str = "cosine"
    #: step: period in epochs; multistep: use ``milestones``.
    step_size: int = 5
    milestones: tuple[int, ...] = (5, 8)
    #: Decay factor of step, multistep, exponential and plateau.
    gamma: float = 0.1
    #: cosine-restarts: epochs of the first cycle.
    restart_period: int = 5
    #: plateau: epochs without improvement before the LR drops.
    plateau_patience: int = 2
    #: Linear warm-up from 0 over this many epochs (per step), before the scheduler starts.
    warmup_epochs: int = 0
    #: Stop after this many epochs without improvement of ``monitor`` (``None``: never).
    early_stopping: int | None = None
    #: ``val_accuracy`` / ``val_loss`` (or any key of the validation metrics with ``val_``).
    #: Empty: val_accuracy for classifiers, val_loss otherwise.
    monitor: str = ""
    #: Image classifiers: ``shift`` (random translations of up to 7%) or ``none``.
    augment: str = "shift"
    #: Freeze the first N parameter tensors (backbones).
    freeze: int = 0
    device: str = "auto"
    #: Mixed precision on CUDA (ignored on the CPU).
    amp: bool = True
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 0
    #: Run directory; empty: ``runs/<model>-<data>``.
    out: str = ""
    #: ``None``, ``"auto"`` (the run directory's last checkpoint, if any) or a run directory.
    resume: str | None = None
    tensorboard: bool = True
    #: Progress bar on a terminal (plain epoch lines are always printed).
    progress: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        self.model_args = dict(self.model_args)
        self.task_args = dict(self.task_args)
        self.milestones = tuple(int(m) for m in self.milestones)
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "step_size": self.step_size,
            "restart_period": self.restart_period,
        }
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgumentsError(f"{name} must be positive, got {value!r}")
        non_negative = {
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "warmup_epochs": self.warmup_epochs,
            "freeze": self.freeze,
            "num_workers": self.num_workers,
            "plateau_patience": self.plateau_patience,
        }
        for name, value in non_negative.items():
            if not value >= 0:
                raise InvalidArgumentsError(f"{name} must be >= 0, got {value!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InvalidArgumentsError(f"grad_clip must be positive, got {self.grad_clip!r}")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise InvalidArgumentsError("early_stopping must be at least 1 epoch")
        if not 0 < self.gamma <= 1:
            raise InvalidArgumentsError(f"gamma must be in (0, 1], got {self.gamma!r}")
        choices: dict[str, tuple[str, ...]] = {
            "optimizer": OPTIMIZERS,
            "scheduler": SCHEDULERS,
            "device": DEVICES,
            "augment": AUGMENTATIONS,
        }
        for name, allowed in choices.items():
            choice = getattr(self, name)
            if choice not in allowed:
                raise InvalidArgumentsError(f"{name}={choice!r} is not one of {', '.join(allowed)}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise InvalidArgumentsError(f"{name} must be in (0, 0.5)")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, refusing unknown keys with the closest valid name.

        zoo 0.1's ``vae_loss`` and ``kld_weight`` (in every saved ``config.json`` and
        checkpoint) become the VAE task's ``loss`` and ``kld_weight`` options where they are
        not their defaults, and are dropped where they are.
        """
        names = cls.field_names()
        clean: dict[str, Any] = {}
        data = dict(data)
        legacy = {k: data.pop(k) for k in list(data) if k.replace("-", "_") in _LEGACY_TASK_OPTIONS}
        for key, value in legacy.items():
            option, default = _LEGACY_TASK_OPTIONS[key.replace("-", "_")]
            if value != default:
                data.setdefault("task_args", {})
                data["task_args"] = {option: value, **data["task_args"]}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(f"unknown training option {key!r}{hint}")
            clean[name] = value
        if "model" not in clean:
            raise UsageError("the training configuration needs a model")
        return cls(**clean)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file of training options (a flat table)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise UsageError(f"config file {path} must end in .toml, .yaml, .yml or .json")
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot parse config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a table of options")
    return data
