"""Model cards: a spec's description plus what is measured on a built model.

Parameters are counted exactly; FLOPs are counted on the spec's example input with
``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as 2 FLOPs). That mode
does not see inside fused recurrent kernels (``nn.LSTM`` on the CPU), so those are added
analytically.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from zoo.registry import ModelSpec, json_value

__all__ = ["count_flops", "count_parameters", "model_card"]

#: gates per recurrent cell type: LSTM has 4 (i, f, g, o), GRU 3 (r, z, n), RNN 1
_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def _gates(module: nn.Module) -> int:
    """Gates of a recurrent module (subclasses too: zoo's ``BiGRU`` is an ``nn.GRU``), or 0."""
    return next((n for cls, n in _GATES.items() if isinstance(module, cls)), 0)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters), shared tensors counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _rnn_flops(module: nn.RNNBase, inputs: tuple[Any, ...], out: Any) -> int:
    x = inputs[0]
    if module.batch_first:
        batch, steps = x.shape[0], x.shape[1]
    else:
        steps, batch = x.shape[0], x.shape[1]
    gates = _gates(module) * module.hidden_size
    directions = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        fan_in = module.input_size if layer == 0 else module.hidden_size * directions
        # two mat-vecs per step (input and hidden), 2 FLOPs per multiply-add
        total += 2 * gates * (fan_in + module.hidden_size) * steps * batch * directions
    return total


def count_flops(model: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``inputs`` (no gradients, eval mode assumed).

    A recurrent module whose kernel the counter did not see (the fused CPU LSTM) gets its
    FLOPs computed analytically; one it did see (GRU/RNN run as matmuls) is not counted twice.
    """
    counter = FlopCounterMode(display=False)
    missed = 0
    seen_before: dict[int, int] = {}

    def before(module: nn.Module, args: tuple[Any, ...]) -> None:
        seen_before[id(module)] = counter.get_total_flops()

    def after(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        nonlocal missed
        if counter.get_total_flops() == seen_before.pop(id(module)):
            missed += _rnn_flops(module, args, out)  # type: ignore[arg-type]

    rnns = [m for m in model.modules() if _gates(m)]
    handles = [m.register_forward_pre_hook(before) for m in rnns]
    handles += [m.register_forward_hook(after) for m in rnns]
    try:
        with counter, torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return int(counter.get_total_flops()) + missed


def model_card(spec: ModelSpec, batch_size: int = 1, **kwargs: Any) -> dict[str, Any]:
    """The spec's description plus parameter count and FLOPs measured on a built model."""
    model = spec.build(**kwargs).eval()
    total, trainable = count_parameters(model)
    example = spec.example_input(batch_size)
    flops = count_flops(model, example)
    card = spec.to_dict()
    card["options_used"] = {k: json_value(v) for k, v in kwargs.items()}
    card["measured"] = {
        "parameters": total,
        "trainable_parameters": trainable,
        "flops": flops,
        "gflops": round(flops / 1e9, 4),
        # torchvision's published "GFLOPS" are multiply-accumulates: compare with this.
        "gmacs": round(flops / 2e9, 4),
        "flops_input_shape": list(example.shape),
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
    }
    return card
