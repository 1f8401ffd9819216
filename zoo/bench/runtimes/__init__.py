"""Runtime adapters, one module each, one interface (``base.Runtime``)."""

from __future__ import annotations

from zoo.bench.runtimes.base import Runtime, Session, Source, cuda_present
from zoo.bench.runtimes.compile import Compile
from zoo.bench.runtimes.eager import Eager
from zoo.bench.runtimes.onnxruntime import OnnxRuntime, OnnxRuntimeDefault, OnnxRuntimeTensorRT
from zoo.bench.runtimes.pt2 import Aoti, Pt2
from zoo.bench.runtimes.torchscript import TorchScript

__all__ = ["RUNTIMES", "Runtime", "Session", "Source", "cuda_present", "get_runtime"]

#: Every runtime, in the order tables list them.
RUNTIMES: dict[str, type[Runtime]] = {
    r.name: r
    for r in (
        Eager,
        TorchScript,
        OnnxRuntime,
        OnnxRuntimeDefault,
        OnnxRuntimeTensorRT,
        Pt2,
        Aoti,
        Compile,
    )
}


def get_runtime(name: str) -> Runtime:
    from zoo.errors import UsageError
    from zoo.registry import suggest

    try:
        return RUNTIMES[name]()
    except KeyError:
        close = suggest(name, RUNTIMES)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UsageError(
            f"unknown runtime {name!r}{hint} (choose from {', '.join(RUNTIMES)})"
        ) from None
