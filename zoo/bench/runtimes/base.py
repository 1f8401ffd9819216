"""The one interface every runtime adapter implements.

An adapter turns a :class:`Source` (the model's eager module and/or its export directory)
into a :class:`Session` on one device: ``prepare`` puts an input where the runtime wants it
(outside the timed region), ``run`` is the timed call, ``sync`` waits for the device. An
adapter that cannot run here says why (``unavailable``) instead of failing the benchmark.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

__all__ = ["Runtime", "Session", "Source", "cuda_present"]


@dataclass
class Source:
    """What a runtime loads from: an export directory (with its manifest) and, for eager and
    torch.compile, a factory for the same module in PyTorch."""

    model: str
    artifacts: Path
    manifest: dict[str, Any]
    #: Builds the exported module (bundle or bare model) in eval mode, with the same weights.
    build_module: Callable[[], torch.nn.Module]
    extra: dict[str, Any] = field(default_factory=dict)

    def artifact(self, fmt: str) -> Path | None:
        entry = self.manifest.get("formats", {}).get(fmt)
        if not entry or entry.get("status") != "ok" or not entry.get("file"):
            return None
        return self.artifacts / entry["file"]


@dataclass
class Session:
    #: Puts a CPU tensor where this runtime takes its input (not timed).
    prepare: Callable[[torch.Tensor], Any]
    #: The timed call.
    run: Callable[[Any], Any]
    #: Waits until the device has finished (a no-op on the CPU).
    sync: Callable[[], None] = lambda: None
    #: Called once after the last timed call (frees threads and memory).
    close: Callable[[], None] = lambda: None


def cuda_present() -> bool:
    """A real CUDA device, not just a CUDA build (``torch.cuda.is_available`` checks both)."""
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def torch_sync(device: str) -> Callable[[], None]:
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


class Runtime(ABC):
    #: The name users pass to ``--runtime``.
    name: ClassVar[str]
    #: The export format it loads, or None when it runs the PyTorch module itself.
    format: ClassVar[str | None] = None
    #: One line for ``zoo bench --help`` and the README.
    description: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def unavailable(self, source: Source, device: str) -> str | None:
        """Why this runtime cannot run ``source`` on ``device`` here, or None."""
        if device not in self.devices:
            return f"{self.name} does not run on {device}"
        if device == "cuda" and not cuda_present():
            return "no CUDA device here"
        if self.format is not None and source.artifact(self.format) is None:
            status = source.manifest.get("formats", {}).get(self.format, {}).get("status")
            why = f": {status}" if status else ""
            return f"no {self.format} artifact in {source.artifacts}{why}"
        return None

    @abstractmethod
    def load(self, source: Source, device: str, threads: int) -> Session:
        """Load (and for compilers, compile on first call); everything here counts as cold start."""


def to_device(device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.to(device).contiguous()

    return prepare
