"""torch.compile (Inductor) of the eager module; compilation counts as cold start."""

from __future__ import annotations

from zoo.bench.runtimes.base import Runtime, Session, Source, to_device, torch_sync


class Compile(Runtime):
    name = "compile"
    description = "torch.compile(module), Inductor, one graph per batch size"

    def load(self, source: Source, device: str, threads: int) -> Session:
        import torch
        import torch._dynamo

        # Without this Dynamo skips nn.LSTM/GRU forwards and the "compiled" model silently
        # runs eager (measured-pitfalls).
        torch._dynamo.config.allow_rnn = True
        module = source.build_module().to(device).eval()
        compiled = torch.compile(module, dynamic=False)
        return Session(prepare=to_device(device), run=compiled, sync=torch_sync(device))
