"""Model specs, and the registries that map names to what plugins register.

A :class:`ModelSpec` says everything zoo needs to know about a model *without building it*:
its builder, task, example input, outputs, class count, tags, source and what it can be
exported to. Plugins register specs through the ``zoo_register_models`` hook, and formats,
runtimes, tasks and datasets through hooks of their own; each kind has one
:class:`Registry`, filled by the plugin manager (``zoo._pluginmanager``), which everything
else (``zoo list``, the trainer, the exporters, the benchmarks) reads.

This module does not import torch at module level: ``import zoo`` must stay cheap.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from zoo.capabilities import Capabilities
from zoo.errors import (
    DuplicateModelError,
    DuplicateNameError,
    InvalidArgumentsError,
    InvalidSpecError,
    UnknownModelError,
    UnknownNameError,
    one_line,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "InputSpec",
    "LegacyTask",
    "ModelRegistry",
    "ModelSpec",
    "OutputSpec",
    "Registry",
    "check_name",
    "check_options",
    "freeze_first",
    "options_of",
    "suggest",
]

T = TypeVar("T")

_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_DTYPES: Final = frozenset({"float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8"})


def check_name(name: object, kind: str) -> None:
    """Raise InvalidSpecError unless ``name`` is a valid name for a registered ``kind``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidSpecError(
            f"{kind} name {name!r} is invalid: use lowercase letters, digits, '_', '.', '-'"
        )


@final
@dataclass(frozen=True)
class InputSpec:
    """The tensor a model takes, per sample (the batch axis is implied as axis 0)."""

    #: Per-sample shape, batch axis excluded: ``(1, 28, 28)`` for MNIST images.
    shape: tuple[int, ...]
    #: torch dtype name: ``float32``, ``int64``, ``uint8``...
    dtype: str = "float32"
    #: Inclusive range of meaningful values (token ids: ``(1, vocab_size - 1)``).
    value_range: tuple[float, float] = (0.0, 1.0)
    #: Axes of the *batched* tensor that may vary, with a name each (axis 0 is the batch).
    dynamic_axes: Mapping[int, str] = field(default_factory=lambda: {0: "batch"})
    #: Input name used in exported graphs.
    name: str = "input"
    #: Images only: per-channel mean and std applied to [0, 1] pixels before the model.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def image(
        cls,
        shape: tuple[int, int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        **kwargs: Any,
    ) -> InputSpec:
        """A ``[C, H, W]`` float image normalised by ``mean``/``std``; derives the value range."""
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise InvalidSpecError(f"bad normalisation mean={mean!r} std={std!r}")
        low = min((0.0 - m) / s for m, s in zip(mean, std, strict=True))
        high = max((1.0 - m) / s for m, s in zip(mean, std, strict=True))
        value_range = (round(low, 4), round(high, 4))
        return cls(shape, value_range=value_range, mean=tuple(mean), std=tuple(std), **kwargs)

    def __post_init__(self) -> None:
        if not self.shape or any(not isinstance(d, int) or d <= 0 for d in self.shape):
            raise InvalidSpecError(f"input shape must be positive ints, got {self.shape!r}")
        if (self.mean is None) != (self.std is None):
            raise InvalidSpecError("input mean and std go together: give both or neither")
        if self.mean is not None and len(self.mean) not in (1, self.shape[0]):
            raise InvalidSpecError(
                f"input mean has {len(self.mean)} values for {self.shape[0]} channels"
            )
        if self.dtype not in _DTYPES:
            raise InvalidSpecError(
                f"input dtype {self.dtype!r} is not one of {', '.join(sorted(_DTYPES))}"
            )
        low, high = self.value_range
        if not low <= high:
            raise InvalidSpecError(f"input value_range {self.value_range!r} has low > high")
        rank = len(self.shape) + 1
        bad = [axis for axis in self.dynamic_axes if not 0 <= axis < rank]
        if bad:
            raise InvalidSpecError(f"dynamic axes {bad} are outside a rank-{rank} input")

    @property
    def is_integer(self) -> bool:
        return self.dtype in ("int64", "int32", "uint8")

    def batched_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, *self.shape)

    def example(self, batch_size: int = 2, *, seed: int = 0) -> torch.Tensor:
        """A reproducible random tensor that satisfies this spec.

        The default batch of 2 is deliberate: exporters specialise a batch of 1 into a constant.
        """
        import torch  # here: ``import zoo`` must not import torch

        gen = torch.Generator().manual_seed(seed)
        shape = self.batched_shape(batch_size)
        dtype = getattr(torch, self.dtype)
        low, high = self.value_range
        if self.is_integer:
            return torch.randint(int(low), int(high) + 1, shape, generator=gen, dtype=dtype)
        x = torch.rand(shape, generator=gen, dtype=torch.float32) * (high - low) + low
        return x.to(dtype)

    def describe(self) -> str:
        """A compact form such as ``float32[B,1,28,28] in [0, 1]``."""
        dims = ["B"] + [str(d) for d in self.shape]
        for axis, label in self.dynamic_axes.items():
            if axis > 0:
                dims[axis] = label[0].upper() if label else "?"
        low, high = self.value_range
        return f"{self.dtype}[{','.join(dims)}] in [{low:g}, {high:g}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "value_range": list(self.value_range),
            "dynamic_axes": {str(k): v for k, v in sorted(self.dynamic_axes.items())},
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
        }


@final
@dataclass(frozen=True)
class OutputSpec:
    """One output of a model, per sample (batch axis implied as axis 0)."""

    name: str
    #: Per-sample shape for the builder's default arguments, batch axis excluded.
    shape: tuple[int, ...]
    #: A torch dtype name.
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@final
@dataclass(frozen=True)
class ModelSpec:
    """Everything zoo knows about one model, without building it."""

    #: Unique, lowercase: ``[a-z0-9][a-z0-9_.-]*``.
    name: str
    #: Returns a fresh ``nn.Module``; its keyword arguments are the model's options.
    builder: Callable[..., nn.Module]
    #: The name of the task that trains it (``zoo tasks``): ``"classification"``, ...
    task: str
    input: InputSpec
    #: The outputs of ``forward`` in order, for the builder's default arguments.
    outputs: tuple[OutputSpec, ...]
    #: One line for ``zoo list`` and the card.
    summary: str
    #: Number of classes for classifiers with default arguments; ``None`` otherwise.
    num_classes: int | None = None
    tags: tuple[str, ...] = ()
    #: Where the architecture comes from, as a reader can follow it (a paper, a tutorial, a URL).
    source: str = ""
    #: Builds the default preprocessing module (filled in by the export work; may be None).
    transform: Callable[[], nn.Module] | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    #: Set by the registry: the plugin that registered this spec.
    plugin: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "model")
        if not callable(self.builder):
            raise InvalidSpecError(f"model {self.name!r}: builder {self.builder!r} is not callable")
        # Any task name: the task may come from a plugin loaded after this one, so whether it
        # exists is checked when the model is trained (``zoo tasks`` lists them).
        if not isinstance(self.task, str) or not _NAME_RE.match(self.task):
            raise InvalidSpecError(
                f"model {self.name!r}: task {self.task!r} is not a task name such as "
                "'classification' (`zoo tasks` lists them)"
            )
        object.__setattr__(self, "task", str(self.task))
        if not isinstance(self.input, InputSpec):
            raise InvalidSpecError(f"model {self.name!r}: input must be an InputSpec")
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "tags", tuple(self.tags))
        if not self.outputs or not all(isinstance(o, OutputSpec) for o in self.outputs):
            raise InvalidSpecError(f"model {self.name!r}: outputs must be OutputSpecs (at least 1)")
        names = [self.input.name, *(o.name for o in self.outputs)]
        if len(set(names)) != len(names):
            raise InvalidSpecError(
                f"model {self.name!r}: input and output names must be distinct, got {names}"
            )
        if self.num_classes is not None and self.num_classes < 1:
            raise InvalidSpecError(f"model {self.name!r}: num_classes must be positive")
        if not isinstance(self.capabilities, Capabilities):
            raise InvalidSpecError(f"model {self.name!r}: capabilities must be a Capabilities")

    def builder_parameters(self) -> dict[str, Any]:
        """The builder's keyword options and defaults (``inspect.Parameter.empty``: required)."""
        return options_of(self.builder)

    def check_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        """Raise InvalidArgumentsError naming the valid options if ``kwargs`` don't fit."""
        check_options(self.builder, kwargs, f"model {self.name!r}")

    def build(self, **kwargs: Any) -> nn.Module:
        """Validate ``kwargs`` against the builder, then build a fresh model."""
        from torch import nn  # here: ``import zoo`` must not import torch

        self.check_kwargs(kwargs)
        try:
            model = self.builder(**kwargs)
        except (TypeError, ValueError, OverflowError) as exc:
            if not kwargs:
                raise  # the builder's own defaults fail: a bug of the plugin, not the caller's
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            why = one_line(exc, 500, first_line=False)
            raise InvalidArgumentsError(
                f"model {self.name!r} cannot be built with {given}: {why}"
            ) from exc
        if not isinstance(model, nn.Module):
            raise InvalidSpecError(
                f"model {self.name!r}: builder returned {type(model).__name__}, not an nn.Module"
            )
        return model

    def example_input(self, batch_size: int = 2, *, seed: int = 0) -> torch.Tensor:
        return self.input.example(batch_size, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (no model is built)."""
        options = {
            k: (None if v is inspect.Parameter.empty else v)
            for k, v in self.builder_parameters().items()
        }
        return {
            "name": self.name,
            "task": self.task,
            "summary": self.summary,
            "plugin": self.plugin,
            "input": self.input.to_dict(),
            "outputs": [o.to_dict() for o in self.outputs],
            "num_classes": self.num_classes,
            "tags": list(self.tags),
            "source": self.source,
            "has_transform": self.transform is not None,
            "capabilities": self.capabilities.to_dict(),
            "options": {k: json_value(v) for k, v in options.items()},
        }


def options_of(function: Callable[..., Any]) -> dict[str, Any]:
    """The keyword options of ``function`` and their defaults (``inspect.Parameter.empty``:
    required): a model builder's, or a task's ``__init__``'s."""
    sig = inspect.signature(function)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    }


def check_options(function: Callable[..., Any], kwargs: Mapping[str, Any], owner: str) -> None:
    """Raise InvalidArgumentsError, naming the valid options (and the closest one), if
    ``kwargs`` are not keyword options of ``function`` or leave a required one out."""
    sig = inspect.signature(function)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    valid = options_of(function)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidArgumentsError(
            f"{owner} does not take {', '.join(hints)}; "
            f"valid arguments: {', '.join(valid) or '(none)'}"
        )
    missing = [k for k, d in valid.items() if d is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise InvalidArgumentsError(f"{owner} needs argument(s) {', '.join(missing)}")


def json_value(value: Any) -> Any:
    """``value`` itself if it is a JSON scalar, else its ``repr`` (for cards and listings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def suggest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Names close to ``name``: fuzzy matches first, then names that contain it."""
    pool = sorted(candidates)
    close = difflib.get_close_matches(name.lower(), pool, n=n, cutoff=0.6)
    contains = [c for c in pool if name.lower() in c and c not in close]
    return (close + contains)[:n]


class Registry(Generic[T]):
    """Maps names to registered objects of one kind (formats, runtimes, tasks, datasets...).

    Names are unique within a kind: a second registration of a name is refused, naming both
    plugins. Lookups of unknown names raise the kind's ``UnknownNameError`` with close names.
    Iteration follows registration order (built-ins first), which is the order zoo lists and
    reports them in.
    """

    def __init__(
        self,
        kind: str,
        *,
        expected: type | None = None,
        unknown: type[UnknownNameError] = UnknownNameError,
        duplicate: type[DuplicateNameError] = DuplicateNameError,
    ) -> None:
        #: What the objects are, in messages: ``"format"``, ``"runtime"``...
        self.kind = kind
        #: The class every registered object must be an instance of (None: any).
        self._expected = expected
        self._unknown = unknown
        self._duplicate = duplicate
        #: name -> the registered object
        self._objects: dict[str, T] = {}
        #: name -> the plugin that registered it ("" when registered directly)
        self._plugins: dict[str, str] = {}

    def check(self, obj: T) -> str:
        """The name of ``obj`` if it may be registered; raises InvalidSpecError otherwise.

        Subclasses add the checks of their kind and call this first.
        """
        if self._expected is not None and not isinstance(obj, self._expected):
            raise InvalidSpecError(
                f"expected a zoo.{self._expected.__name__} instance, got "
                f"{type(obj).__name__}: {obj!r:.80}"
            )
        name = getattr(obj, "name", None)
        check_name(name, self.kind)
        assert isinstance(name, str)
        return name

    def check_free(self, obj: T, *, plugin: str = "") -> None:
        """Raise DuplicateNameError, naming both plugins, if the name of ``obj`` is taken."""
        name = self.check(obj)
        if name in self._objects:
            raise self._duplicate(
                f"{self.kind} {name!r} from plugin {plugin or '?'!r} is already registered "
                f"by plugin {self._plugins[name] or '?'!r}; rename one of them"
            )

    def register(self, obj: T, *, plugin: str = "") -> T:
        """Add ``obj`` under its ``name``; InvalidSpecError or DuplicateNameError if it cannot."""
        self.check_free(obj, plugin=plugin)
        name = self.check(obj)
        self._objects[name] = obj
        self._plugins[name] = plugin
        return obj

    def get(self, name: str) -> T:
        try:
            return self._objects[name]
        except KeyError:
            raise self._unknown(name, suggest(name, self._objects)) from None

    def plugin_of(self, name: str) -> str:
        """The plugin that registered ``name`` ("" if it was registered directly)."""
        self.get(name)
        return self._plugins[name]

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._objects)

    def __contains__(self, name: object) -> bool:
        return name in self._objects

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._objects.values()))

    def __len__(self) -> int:
        return len(self._objects)


class ModelRegistry(Registry[ModelSpec]):
    """Maps model names to specs; ``spec.plugin`` names the plugin that registered each."""

    def __init__(self) -> None:
        super().__init__(
            "model", expected=ModelSpec, unknown=UnknownModelError, duplicate=DuplicateModelError
        )

    def check_free(self, obj: ModelSpec, *, plugin: str = "") -> None:
        super().check_free(obj, plugin=plugin or obj.plugin)

    def register(self, obj: ModelSpec, *, plugin: str = "") -> ModelSpec:
        """Add ``spec``; raises DuplicateModelError if the name is taken."""
        self.check(obj)
        if plugin:
            obj = replace(obj, plugin=plugin)
        return super().register(obj, plugin=obj.plugin)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._objects)

    def list(
        self,
        pattern: str | Iterable[str] = "*",
        *,
        exclude: str | Iterable[str] = (),
        task: str | None = None,
        tag: str | None = None,
    ) -> list[str]:
        """Sorted names matching any of the wildcard ``pattern``s and none of ``exclude``."""
        include = [pattern] if isinstance(pattern, str) else list(pattern)
        excluded = [exclude] if isinstance(exclude, str) else list(exclude)
        names = []
        for spec in self:
            if not any(fnmatch.fnmatchcase(spec.name, p) for p in include):
                continue
            if any(fnmatch.fnmatchcase(spec.name, p) for p in excluded):
                continue
            if task is not None and spec.task != task:
                continue
            if tag is not None and tag not in spec.tags:
                continue
            names.append(spec.name)
        return names

    def create(self, name: str, **kwargs: Any) -> nn.Module:
        return self.get(name).build(**kwargs)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(sorted(self._objects.values(), key=lambda s: s.name))


def freeze_first(model: nn.Module, n: int) -> nn.Module:
    """Stop gradients for the first ``n`` parameter tensors of ``model`` (a backbone, for
    fine-tuning a new head): ``zoo train --freeze N``, and builders with a ``freeze`` option."""
    params = list(model.parameters())
    if not 0 <= n <= len(params):
        raise InvalidArgumentsError(
            f"freeze={n} is out of range: this model has {len(params)} parameter tensors"
        )
    for p in params[:n]:
        p.requires_grad_(False)
    return model


# --- zoo 0.1's Task enum, for plugins written against it (until zoo 0.3) --------------------


class LegacyTask(str, Enum):
    """zoo 0.1's ``Task`` enum, kept for plugins written against zoo 0.1 until zoo 0.3.

    Each member is the name of the task that replaced it, a ``str`` that a ``ModelSpec``
    takes as its ``task`` (``GENERATIVE`` is the VAE's ``vae``), with 0.1's ``.name`` and a
    ``.value`` that is the new name. Plugins reach it as ``zoo.Task.CLASSIFICATION`` or
    ``from zoo.registry import Task``, each with a DeprecationWarning (docs/plugins.md,
    Deprecations); ``LegacyTask("generative")`` finds 0.1's values too.
    """

    CLASSIFICATION = "classification"
    SEQUENCE_CLASSIFICATION = "sequence_classification"
    GENERATIVE = "vae"
    BLOCK = "block"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def _missing_(cls, value: object) -> LegacyTask | None:
        return cls.GENERATIVE if value == "generative" else None  # 0.1's value


def __getattr__(name: str) -> Any:
    if name == "Task":  # zoo 0.1's ``from zoo.registry import Task``
        warnings.warn(
            "zoo.registry.Task is deprecated since zoo 0.2 and will be removed in 0.3: a "
            'model\'s task is a name (task="classification"); zoo.Task is the class tasks '
            "subclass",
            DeprecationWarning,
            stacklevel=2,
        )
        return LegacyTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
