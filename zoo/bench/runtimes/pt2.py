"""torch.export: the ``.pt2`` ExportedProgram, and the AOTInductor-compiled package."""

from __future__ import annotations

from zoo.bench.runtimes.base import Runtime, Session, Source, to_device, torch_sync


class Pt2(Runtime):
    name = "pt2"
    format = "pt2"
    description = "model.pt2, torch.export.load(...).module()"

    def load(self, source: Source, device: str, threads: int) -> Session:
        import torch

        path = source.artifact("pt2")
        assert path is not None
        program = torch.export.load(str(path))
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            # Moves parameters, buffers and constants baked into the graph (device= args).
            program = move_to_device_pass(program, device)
        module = program.module()
        return Session(prepare=to_device(device), run=module, sync=torch_sync(device))


class Aoti(Runtime):
    name = "aoti"
    format = "aoti"
    description = "model.aoti.pt2, AOTInductor package (compiled at export, for the CPU)"
    devices = ("cpu",)  # zoo export compiles on the CPU; a CUDA package needs a GPU at export

    def load(self, source: Source, device: str, threads: int) -> Session:
        from zoo.export.pt2 import load_aoti

        path = source.artifact("aoti")
        assert path is not None
        module = load_aoti(path)
        return Session(prepare=to_device(device), run=module, sync=torch_sync(device))
