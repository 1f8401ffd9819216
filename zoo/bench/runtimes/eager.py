"""Eager PyTorch: the module itself (the worker runs every torch runtime in inference mode)."""

from __future__ import annotations

from zoo.bench.runtimes.base import Runtime, Session, Source, to_device, torch_sync


class Eager(Runtime):
    name = "eager"
    description = "the PyTorch module, torch.inference_mode"

    def load(self, source: Source, device: str, threads: int) -> Session:
        module = source.build_module().to(device).eval()
        return Session(prepare=to_device(device), run=module, sync=torch_sync(device))
