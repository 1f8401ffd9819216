"""PyTorch itself, zoo's built-in runtime plugin: the eager module (the reference every
speed-up is measured against) and ``torch.compile`` of it."""

from __future__ import annotations

from zoo.hookspecs import RuntimeRegistrar, hookimpl
from zoo.runtimes import Runtime, Session, Source, torch_session

__all__ = ["Compile", "Eager"]


class Eager(Runtime):
    name = "eager"
    description = "the PyTorch module, torch.inference_mode"
    reference = True

    def load(self, source: Source, device: str, threads: int) -> Session:
        module = source.module().to(device).eval()
        return torch_session(module, device)


class Compile(Runtime):
    name = "compile"
    description = "torch.compile(module), Inductor, one graph per batch size"

    def load(self, source: Source, device: str, threads: int) -> Session:
        import torch._dynamo  # here: it takes a second to import, and zoo list loads plugins

        # Without this Dynamo skips nn.LSTM/GRU forwards and the "compiled" model silently
        # runs eager (measured-pitfalls).
        torch._dynamo.config.allow_rnn = True
        module = source.module().to(device).eval()
        compiled = torch.compile(module, dynamic=False)
        return torch_session(compiled, device)


@hookimpl
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    registry.register(Eager())
    registry.register(Compile())
