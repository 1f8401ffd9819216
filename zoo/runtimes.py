"""Benchmark runtimes: the interface a runtime plugin implements.

A :class:`Runtime` turns a :class:`Source` (an export directory, and a factory for the same
module in PyTorch) into a :class:`Session` on one device: ``prepare`` puts an input where the
runtime wants it (outside the timed region), ``run`` is the timed call, ``sync`` waits for
the device. A runtime that cannot run here says why (:meth:`Runtime.unavailable`) instead of
failing the benchmark. zoo's own runtimes are plugins (``zoo/plugins/``); a plugin adds one
with the ``zoo_register_runtimes`` hook::

    @zoo.hookimpl
    def zoo_register_runtimes(registry):
        registry.register(MyRuntime())

``zoo bench --runtime``, the report and the recommendations read the
:class:`RuntimeRegistry`. Each runtime is timed in a process of its own.

Importing this module does not import torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from zoo.errors import InvalidSpecError, UnknownRuntimeError
from zoo.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = [
    "Runtime",
    "RuntimeRegistry",
    "Session",
    "Source",
    "copied_outputs",
    "cuda_graphed",
    "cuda_present",
    "strict_fp32",
    "tf32_state",
    "to_device",
    "torch_session",
    "torch_sync",
]


@dataclass(frozen=True)
class Source:
    """What a runtime loads from: the artifacts of one export, and the module they hold."""

    #: The model's registered name.
    model: str
    #: The export directory.
    directory: Path
    #: Format name -> its artifact (the format's first file) in ``directory``, for every format
    #: that passed its parity gate.
    artifacts: Mapping[str, Path]
    #: Format name -> why it has no artifact (its export or parity gate failed).
    failed: Mapping[str, str] = field(default_factory=dict)
    #: Builds the exported module (bundle or bare model) in eval mode, with the export's own
    #: weights: for runtimes that run PyTorch itself (eager, torch.compile).
    build_module: Callable[[], torch.nn.Module] | None = None

    def artifact(self, fmt: str) -> Path | None:
        """The artifact of format ``fmt``, or None if this export has none."""
        return self.artifacts.get(fmt)

    def module(self) -> torch.nn.Module:
        if self.build_module is None:
            raise RuntimeError(f"no module factory for {self.model}: this source is for lookups")
        return self.build_module()


@dataclass
class Session:
    """One loaded runtime on one device."""

    #: Puts a CPU tensor where this runtime takes its input (not timed).
    prepare: Callable[[torch.Tensor], Any]
    #: The timed call.
    run: Callable[[Any], Any]
    #: Waits until the device has finished (a no-op on the CPU).
    sync: Callable[[], None] = lambda: None
    #: Called once after the last timed call (frees threads and memory).
    close: Callable[[], None] = lambda: None
    #: Turns what ``run`` returned into the outputs (arrays or tensors, in the export's output
    #: order), outside the timed region: for runtimes whose ``run`` leaves them in bound
    #: buffers. None: ``run`` returns the outputs itself. The conformance kit compares them
    #: with eager PyTorch.
    fetch: Callable[[Any], Any] | None = None

    def outputs(self, x: torch.Tensor) -> list[Any]:
        """One call on ``x``, untimed: prepared, run, waited for and fetched; the outputs as
        NumPy arrays, in the export's output order (``zoo predict``, the conformance kit)."""
        import numpy as np

        got = self.run(self.prepare(x))
        self.sync()
        if self.fetch is not None:
            got = self.fetch(got)
        outputs = got if isinstance(got, (tuple, list)) else [got]
        return [
            np.asarray(o.detach().cpu()) if hasattr(o, "detach") else np.asarray(o) for o in outputs
        ]


class Runtime(ABC):
    """A way to run an export (or the PyTorch module) that ``zoo bench`` times."""

    #: The name users pass to ``--runtime``.
    name: ClassVar[str]
    #: The export format it loads (a registered format's name), or None when it runs the
    #: PyTorch module itself.
    format: ClassVar[str | None] = None
    #: One line for ``zoo runtimes`` and reports.
    description: ClassVar[str] = ""
    #: The devices it can run on.
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    #: The runtime every speed-up is measured against (zoo's ``eager``): at most one.
    reference: ClassVar[bool] = False
    #: A plain runtime this one must not be slower than beyond noise (zoo's tuned ONNX Runtime
    #: session against a default ``InferenceSession``); the report says where it is.
    peer: ClassVar[str | None] = None
    #: What this runtime runs that may make it slower than its peer, said beside a loss
    #: (the table says why, not only that).
    peer_note: ClassVar[str] = ""

    def unavailable(self, source: Source, device: str) -> str | None:
        """Why this runtime cannot run ``source`` on ``device`` here, or None."""
        if device not in self.devices:
            return f"{self.name} does not run on {device}"
        if device == "cuda" and not cuda_present():
            return "no CUDA device here"
        if self.format is not None and source.artifact(self.format) is None:
            why = source.failed.get(self.format)
            return f"no {self.format} artifact in {source.directory}" + (f": {why}" if why else "")
        return None

    def serving(self) -> Runtime:
        """This runtime as a server's replica runs it (``zoo serve``): the same by default. A
        runtime whose threads wait for work by spinning returns a copy that sleeps instead, as
        a server shares its CPUs with its own event loop between requests."""
        return self

    @abstractmethod
    def load(self, source: Source, device: str, threads: int) -> Session:
        """Load (and for compilers, compile on first call); all of it counts as cold start.

        ``threads``: the thread count of the run, which the runtime's own pools must use.
        """


class RuntimeRegistry(Registry[Runtime]):
    """Runtime names -> :class:`Runtime` objects, in registration order (built-ins first)."""

    def __init__(self) -> None:
        super().__init__("runtime", expected=Runtime, unknown=UnknownRuntimeError)

    def check(self, obj: Runtime) -> str:
        name = super().check(obj)
        if obj.reference and any(r.reference and r.name != name for r in self):
            raise InvalidSpecError(f"runtime {name!r}: only one runtime can be the reference")
        return name

    def reference(self) -> str | None:
        """The name of the runtime speed-ups are measured against, if one is registered."""
        return next((r.name for r in self if r.reference), None)


def cuda_present() -> bool:
    """A real CUDA device, not just a CUDA build (``torch.cuda.is_available`` checks both)."""
    import torch  # here: importing this module must not import torch

    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def torch_sync(device: str) -> Callable[[], None]:
    """``torch.cuda.synchronize`` on a GPU, nothing on the CPU."""
    import torch  # here: importing this module must not import torch

    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def to_device(device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``prepare`` for torch runtimes: the input, contiguous, on ``device``."""

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.to(device).contiguous()

    return prepare


def torch_session(module: Callable[[torch.Tensor], Any], device: str) -> Session:
    """The session of a runtime that calls a PyTorch callable (a module, a compiled or loaded
    program): the input moved to ``device`` beforehand, a device synchronisation after."""
    return Session(prepare=to_device(device), run=module, sync=torch_sync(device))


def cuda_graphed(call: Callable[[torch.Tensor], Any]) -> Session:
    """The session of a runtime that replays ``call`` (an AOTInductor package, a module) as a
    CUDA graph: each input shape is captured once, on its first call (after three calls on a
    side stream, which load kernels and settle the allocator), and every later call copies
    its input into the captured one and replays: one launch instead of one per kernel, which
    is what bounds a small network at batch 1 on a GPU.

    The capture is *relaxed*: ``call`` may query CUDA events while it is captured (an
    AOTInductor package checks that its previous run finished before it starts the next),
    which the default mode refuses; the device is synchronised first, so that they have.
    A replay writes its outputs into the same buffers every time: they stay valid until the
    next call (``fetch`` copies them out for comparisons)."""
    import torch  # here: importing this module must not import torch

    graphs: dict[tuple[Any, ...], tuple[torch.Tensor, Any, Any]] = {}

    def capture(x: torch.Tensor) -> tuple[torch.Tensor, Any, Any]:
        static = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                call(static)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="relaxed"):
            out = call(static)
        return static, graph, out

    def run(x: torch.Tensor) -> Any:
        key = (tuple(x.shape), x.dtype, x.stride())
        entry = graphs.get(key)
        if entry is None:
            entry = graphs[key] = capture(x)
        static, graph, out = entry
        static.copy_(x)
        graph.replay()
        return out

    return Session(
        prepare=to_device("cuda"), run=run, sync=torch.cuda.synchronize, close=graphs.clear,
        fetch=copied_outputs,
    )  # fmt: skip


def copied_outputs(out: Any) -> tuple[Any, ...]:
    """The ``fetch`` of a session whose calls write into the same buffers every time (CUDA
    graphs): copies of the outputs, which outlive the next call."""
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    return tuple(o.detach().clone() for o in outs)


def tf32_state() -> bool:
    """Whether fp32 convolutions or matrix products on CUDA may run in TF32 (10-bit
    mantissas on tensor cores) in this process (PyTorch lets cuDNN's convolutions do so by
    default)."""
    import torch  # here: importing this module must not import torch

    return bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)


def strict_fp32(tf32: bool = False) -> None:
    """Let fp32 convolutions and matrix products on CUDA use TF32 only when ``tf32``: fp32
    stays fp32 unless asked (for this process; zoo bench times each runtime in its own).

    The ``allow_tf32`` flags, not ``fp32_precision`` (torch 2.9 and later): once the newer
    API is used, reading the flags raises in torch 2.14 ("a mix of the legacy and new APIs"),
    and Inductor and other libraries still read them."""
    import torch  # here: importing this module must not import torch

    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
