"""TorchScript: the frozen ``model.ts``, loaded and passed through ``optimize_for_inference``
(after loading: a module saved after it does not load back, see measured-pitfalls)."""

from __future__ import annotations

from zoo.bench.runtimes.base import Runtime, Session, Source, to_device, torch_sync


class TorchScript(Runtime):
    name = "torchscript"
    format = "torchscript"
    description = "model.ts, torch.jit.load + optimize_for_inference"

    def load(self, source: Source, device: str, threads: int) -> Session:
        from zoo.export import torchscript

        path = source.artifact("torchscript")
        assert path is not None
        module = torchscript.optimize(torchscript.load(path, map_location=device))
        return Session(prepare=to_device(device), run=module, sync=torch_sync(device))
