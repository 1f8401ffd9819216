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

from zoo import _json as js
from zoo.errors import InvalidArgumentsError, UsageError, one_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# No torch import here: the CLI reads these choices to build `zoo train --help`.

__all__ = [
    "MAX_CONFIG_BYTES",
    "OPTIMIZERS",
    "SCHEDULERS",
    "Option",
    "TrainConfig",
    "accepts",
    "check_checkpoint_config",
    "config_schema",
    "load_config_file",
    "options",
    "validate_config",
    "validate_options",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "multistep", "exponential", "cosine", "cosine-restarts", "plateau")
DEVICES = ("auto", "cpu", "cuda")
#: ``auto``: fp16 mixed precision on CUDA, fp32 on a CPU (zoo 0.1's ``amp``, on by default).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUGMENTATIONS = ("shift", "none")
#: A config file is a few hundred bytes; zoo reads no more than this (and no device or FIFO).
MAX_CONFIG_BYTES = 1 << 20
#: Options of zoo 0.1 that became the VAE task's: old name -> (task option, its default).
_LEGACY_TASK_OPTIONS = {"vae_loss": ("loss", "elbo"), "kld_weight": ("kld_weight", 1.0)}


@dataclass(frozen=True)
class Option:
    """One training option as declared: its JSON type, range or choices, and help. The
    ``zoo train`` options and the validation of config files both derive from these."""

    #: ``integer``, ``number`` (finite), ``string``, ``boolean``, ``integers`` (a list),
    #: ``object`` (free-form: checked later by the model or task).
    kind: str
    help: str = ""
    minimum: float | None = None
    #: The bound itself is excluded (``lr > 0``).
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    #: ``null`` is allowed (the option's default is None: off, or not given).
    nullable: bool = False

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the option's value."""
        kind = {"integers": "array"}.get(self.kind, self.kind)
        schema: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        bounds = {
            "minimum": self.minimum,
            "exclusiveMinimum": self.exclusive_minimum,
            "exclusiveMaximum": self.exclusive_maximum,
            "maximum": self.maximum,
        }
        bounds = {k: v for k, v in bounds.items() if v is not None}
        if self.kind == "number":
            schema["finite"] = True
        if self.kind == "integers":
            schema["items"] = {"type": "integer", **bounds}
        else:
            schema.update(bounds)
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        return schema

    def expects(self) -> str:
        """What a valid value is, in words: ``an integer >= 1``, ``one of sgd, adam``..."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        words = {
            "integer": "an integer",
            "number": "a finite number",
            "string": "a string",
            "boolean": "true or false",
            "integers": "a list of integers",
            "object": "a table of KEY = VALUE options",
        }[self.kind]
        low = [f">= {_num(self.minimum)}"] if self.minimum is not None else []
        low += [f"> {_num(self.exclusive_minimum)}"] if self.exclusive_minimum is not None else []
        high = [f"< {_num(self.exclusive_maximum)}"] if self.exclusive_maximum is not None else []
        high += [f"<= {_num(self.maximum)}"] if self.maximum is not None else []
        if low or high:
            words += (" each" if self.kind == "integers" else "") + " " + " and ".join(low + high)
        return words + (" (or nothing)" if self.nullable else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def option(default: Any, kind: str, help: str = "", **declared: Any) -> Any:
    """A TrainConfig field (an immutable default) whose metadata declares its
    :class:`Option`."""
    return field(default=default, metadata={"option": Option(kind, help, **declared)})


@dataclass
class TrainConfig:
    """What to train, on what, and how. Defaults train LeNet-sized models well on mnist5k.

    Each field declares its option (type, range or choices, help): ``zoo train``'s options,
    the validation of ``--config`` files and of this record derive from those declarations
    (:func:`options`, :func:`config_schema`)."""

    model: str = field(metadata={"option": Option("string", "A registered model name.")})
    data: str = option(
        "",
        "string",
        "Dataset (`zoo datasets`); default: the task's (mnist5k for images, names for tokens).",
    )
    model_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"option": Option("object", "Builder options of the model (--arg).")},
    )
    task_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"option": Option("object", "Options of the model's task (--task-arg).")},
    )
    data_dir: str | None = option(
        None,
        "string",
        "Where downloadable datasets live (default $ZOO_DATA_DIR or ~/.cache/zoo/data).",
        nullable=True,
    )
    epochs: int = option(15, "integer", "Epochs to train (default 15).", minimum=1)
    batch_size: int = option(64, "integer", "Batch size (default 64).", minimum=1)
    optimizer: str = option("adam", "string", "Optimizer (default adam).", choices=OPTIMIZERS)
    lr: float = option(1e-3, "number", "Learning rate (default 1e-3).", exclusive_minimum=0)
    momentum: float = option(0.9, "number", "SGD momentum (default 0.9).", minimum=0)
    weight_decay: float = option(0.0, "number", "Weight decay (default 0).", minimum=0)
    grad_clip: float | None = option(
        None,
        "number",
        "Clip the gradient norm to this value.",
        exclusive_minimum=0,
        nullable=True,
    )
    scheduler: str = option(
        "cosine", "string", "LR scheduler, stepped per epoch (default cosine).", choices=SCHEDULERS
    )
    step_size: int = option(5, "integer", "step: period in epochs (default 5).", minimum=1)
    milestones: tuple[int, ...] = option(
        (5, 8), "integers", "multistep: comma-separated epochs (default 5,8).", minimum=1
    )
    gamma: float = option(
        0.1,
        "number",
        "Decay factor for step, multistep, exponential, plateau (default 0.1).",
        exclusive_minimum=0,
        maximum=1,
    )
    restart_period: int = option(
        5, "integer", "cosine-restarts: epochs of the first cycle (default 5).", minimum=1
    )
    plateau_patience: int = option(
        2,
        "integer",
        "plateau: epochs without improvement before decaying (default 2).",
        minimum=0,
    )
    warmup_epochs: int = option(
        0, "integer", "Linear warm-up over this many epochs, per step (default 0).", minimum=0
    )
    early_stopping: int | None = option(
        None,
        "integer",
        "Stop after this many epochs without improvement of --monitor.",
        minimum=1,
        nullable=True,
    )
    monitor: str = option(
        "",
        "string",
        "Metric for the best checkpoint and early stopping: val_ and a metric of the task "
        "(`zoo tasks`; default val_accuracy for classifiers).",
    )
    augment: str = option(
        "shift",
        "string",
        "Image classifiers: shift (random translations up to 7%; default) or none.",
        choices=AUGMENTATIONS,
    )
    freeze: int = option(
        0, "integer", "Freeze the first N parameter tensors (backbones).", minimum=0
    )
    device: str = option(
        "auto", "string", "auto (CUDA when present), cpu or cuda.", choices=DEVICES
    )
    precision: str = option(
        "auto",
        "string",
        "auto (fp16 mixed precision on CUDA, fp32 on a CPU; default), fp32, bf16 (autocast: "
        "CPUs with AVX512-BF16 or AMX, GPUs from Ampere on) or fp16 (CUDA only, with a "
        "GradScaler). Weights and checkpoints stay fp32. A resumed run keeps its own unless "
        "given.",
        choices=PRECISIONS,
    )
    channels_last: bool | None = option(
        None,
        "boolean",
        "Train image models in the channels-last (NHWC) memory format (default off; a "
        "resumed run keeps its own unless given).",
        nullable=True,
    )
    compile: bool | None = option(
        None,
        "boolean",
        "torch.compile the model (the first steps compile for seconds; default off; a "
        "resumed run keeps its own unless given).",
        nullable=True,
    )
    backend: str = option(
        "auto",
        "string",
        "torch.distributed backend of a data-parallel run (torchrun, --nproc): auto (NCCL on "
        "CUDA, gloo on CPU), gloo or nccl.",
        choices=("auto", "gloo", "nccl"),
    )
    seed: int = option(
        0,
        "integer",
        "Seed python, numpy, torch and the data order (default 0).",
        minimum=0,
        maximum=2**32 - 1,  # numpy's seeds are 32-bit
    )
    deterministic: bool = option(False, "boolean", "Use deterministic algorithms only.")
    num_workers: int | None = option(
        None,
        "integer",
        "DataLoader worker processes for datasets read from disk (default: one per CPU core, "
        "at most 8; in-memory datasets are sliced in the training process).",
        minimum=0,
        nullable=True,
    )
    out: str = option("", "string", "Run directory (default runs/MODEL-DATA).")
    resume: str | None = option(
        None,
        "string",
        "Continue a run: 'auto' (the --out directory, if it has a checkpoint) or a run dir.",
        nullable=True,
    )
    tensorboard: bool = option(
        True, "boolean", "Write TensorBoard logs under RUN/tensorboard (default on)."
    )
    progress: bool = option(True, "boolean", "Show a progress bar on a terminal (default on).")
    val_fraction: float = option(
        0.1,
        "number",
        "Share of the training data held out for validation (default 0.1).",
        exclusive_minimum=0,
        exclusive_maximum=0.5,
    )
    test_fraction: float = option(
        0.1,
        "number",
        "Share held out for testing where a dataset has no test split (default 0.1).",
        exclusive_minimum=0,
        exclusive_maximum=0.5,
    )

    def __post_init__(self) -> None:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.milestones, tuple):
            data["milestones"] = list(self.milestones)
        validate_options(data)
        self.model_args = dict(self.model_args)
        self.task_args = dict(self.task_args)
        self.milestones = tuple(self.milestones)
        for name, declared in options().items():  # numbers as floats: 1 is 1.0
            value = getattr(self, name)
            if declared.kind == "number" and value is not None:
                setattr(self, name, float(value))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, refusing unknown keys with the closest valid name.

        zoo 0.1's ``vae_loss`` and ``kld_weight`` (in every saved ``config.json`` and
        checkpoint) become the VAE task's ``loss`` and ``kld_weight`` options where they are
        not their defaults, and are dropped where they are; its ``amp`` becomes
        ``precision``: ``false`` is ``fp32``, ``true`` the default (``auto``).
        """
        return cls(**_migrated(data))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data


def _migrated(data: dict[str, Any], source: str = "") -> dict[str, Any]:
    """``data`` with ``_`` names, zoo 0.1's VAE options moved to ``task_args`` and its
    ``amp`` to ``precision``; unknown names refused with the closest valid one."""
    names = TrainConfig.field_names()
    clean: dict[str, Any] = {}
    data = dict(data)
    if "amp" in data:
        # zoo 0.1: on (its default) was fp16 autocast on CUDA and fp32 on a CPU, which is
        # precision auto; off was fp32 everywhere. A precision given beside it wins.
        amp = data.pop("amp")
        if not isinstance(amp, bool):
            raise InvalidArgumentsError(
                f"{_where(source)}amp: must be true or false, got {_shown(amp)} "
                "(zoo 0.1's option: give precision instead)"
            )
        if not amp:
            data.setdefault("precision", "fp32")
    legacy = {k: data.pop(k) for k in list(data) if k.replace("-", "_") in _LEGACY_TASK_OPTIONS}
    for key, value in legacy.items():
        task_option, default = _LEGACY_TASK_OPTIONS[key.replace("-", "_")]
        if value != default:
            task_args = data.get("task_args", {})
            if isinstance(task_args, dict):  # else the schema refuses task_args itself
                data["task_args"] = {task_option: value, **task_args}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{_where(source)}unknown training option {key!r}{hint}")
        clean[name] = value
    return clean


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file of training options (a flat table), validated against
    the declared options: a regular file of at most :data:`MAX_CONFIG_BYTES`, names with
    ``_``, zoo 0.1's VAE options migrated."""
    path = Path(path)
    try:
        text = js.read_text(path, f"config file {path}", MAX_CONFIG_BYTES)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from None
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
        raise UsageError(f"cannot parse config file {path}: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a table of options")
    data = _migrated(data, str(path))
    validate_options(data, str(path), partial=True)
    return data


def options() -> dict[str, Option]:
    """Every training option but ``model``, as declared on :class:`TrainConfig`'s fields."""
    return {
        f.name: f.metadata["option"] for f in dataclasses.fields(TrainConfig) if f.name != "model"
    }


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a training configuration (``config.json``, a ``--config`` file once
    its ``-`` are ``_``), derived from the declared options. ``finite`` is zoo's keyword: a
    number that is not NaN or infinite."""
    properties = {"model": {"type": "string", "minLength": 1}}
    properties.update({name: declared.schema() for name, declared in options().items()})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": ["model"],
        "additionalProperties": False,
    }


def _validator(schema: dict[str, Any] | None = None) -> Any:
    return js.validator(config_schema() if schema is None else schema)


def validate_options(data: dict[str, Any], source: str = "", *, partial: bool = False) -> None:
    """InvalidArgumentsError, in one line, for the first option of ``data`` (names with
    ``_``) that the schema refuses: ``SOURCE: NAME: must be WHAT, got VALUE``. ``partial``:
    ``model`` may be missing (a config file; the command line gives it)."""
    errors = [
        e for e in _validator().iter_errors(data) if not (partial and e.validator == "required")
    ]
    if not errors:
        return
    error = min(errors, key=lambda e: [str(p) for p in e.path])
    if not error.path:  # the table itself: a missing model, an unknown key
        if error.validator == "required":
            raise UsageError(f"{_where(source)}the training configuration needs a model")
        _migrated(data, source)  # names the unknown option, with the closest valid one
        raise InvalidArgumentsError(f"{_where(source)}{error.message}")
    name = str(error.path[0])
    declared = options().get(name) or Option("string", help="a registered model name")
    raise InvalidArgumentsError(
        f"{_where(source)}{name}: must be {declared.expects()}, got {_shown(data[name])}"
    )


def validate_config(data: dict[str, Any], source: str = "") -> dict[str, Any]:
    """A whole saved configuration (``config.json``, a checkpoint's), zoo 0.1's names
    migrated, checked against the schema: the migrated mapping, or the one-line error of
    :func:`validate_options`."""
    clean = _migrated(data, source)
    validate_options(clean, source)
    return clean


def check_checkpoint_config(path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The configuration a checkpoint records (``meta`` of checkpoint ``path``), by the
    declared schema, and its epoch within the epochs it plans (``epoch`` counts the epochs
    done, and every save is of an epoch the run trains): the migrated configuration, or
    :class:`~zoo.checkpoint.CheckpointError` in one line naming the file."""
    from zoo.checkpoint import CheckpointError  # here: this module imports no torch

    where = Path(path) / "meta.json"
    try:
        config = validate_config(meta["config"])
    except (UsageError, InvalidArgumentsError) as exc:
        raise CheckpointError(
            f"checkpoint {where} is malformed: config: {exc} (zoo writes this file; was it edited?)"
        ) from None
    planned = config.get("epochs", TrainConfig.__dataclass_fields__["epochs"].default)
    progress = meta.get("progress", {})
    for what, done in (("", meta.get("epoch")), ("progress ", progress.get("epoch"))):
        if isinstance(done, int) and done > planned:
            raise CheckpointError(
                f"checkpoint {where}: {what}'epoch' is {done}, beyond the {planned} epochs its "
                "config plans (zoo writes this file; was it edited?)"
            )
    return config


def accepts(declared: Option, value: Any) -> bool:
    """Whether ``value`` is valid for ``declared``, by its JSON Schema (as files are)."""
    return bool(_validator(declared.schema()).is_valid(value))


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
