"""How a run computes, as opposed to what it learns: precision, memory format, compilation.

``--precision`` picks the autocast dtype: ``fp32`` (none), ``bf16`` (CPUs with AVX512-BF16 or
AMX, GPUs from Ampere on; no loss scaling needed), ``fp16`` (CUDA only, with a GradScaler),
or ``auto`` (fp16 on CUDA, fp32 on a CPU). ``--channels-last`` trains image models in NHWC,
the layout oneDNN and cuDNN convolutions prefer. ``--compile`` compiles the model in place
(``nn.Module.compile``): its ``state_dict`` keeps the plain names, so checkpoints and exports
are those of an uncompiled run, and a distributed wrapper may still wrap it afterwards.
Weights stay fp32 (autocast computes in the lower precision, the optimizer updates fp32),
contiguous in every checkpoint: exports of such a run are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from zoo._cpu import native_bf16
from zoo.errors import UsageError
from zoo.train.config import TrainConfig

__all__ = [
    "SPEED_OPTIONS",
    "Speed",
    "check_speed_options",
    "given_speed_options",
    "resolve_precision",
]

#: The options that change how a run computes, not what it learns: a resumed run keeps the
#: checkpoint's unless the command gives them (``precision`` other than ``auto``, a switch
#: given either way).
SPEED_OPTIONS = ("precision", "channels_last", "compile")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def device_type(device: str) -> str:
    """The device type ``--device`` means on this machine (``auto``: CUDA where torch sees
    one). A ``cuda`` that is not there is refused by the trainer, with its own message."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(wanted: str, device_type: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``wanted`` on this device type; UsageError, in one
    line naming the fix, for a precision the device cannot train in."""
    if wanted == "auto":
        return "fp16" if device_type == "cuda" else "fp32"
    if wanted == "fp16" and device_type != "cuda":
        raise UsageError("--precision fp16 needs CUDA (a GradScaler run); on CPU use bf16 or fp32")
    if (
        wanted == "bf16"
        and device_type == "cuda"
        and torch.cuda.is_available()
        and not torch.cuda.is_bf16_supported()
    ):
        raise UsageError(
            f"--precision bf16: this GPU ({torch.cuda.get_device_name()}) has no bf16 "
            "support; use fp16 or fp32"
        )
    return wanted


def check_speed_options(config: TrainConfig) -> None:
    """Refuse, before anything is built or written, options this machine cannot run."""
    resolve_precision(config.precision, device_type(config.device))


def given_speed_options(config: TrainConfig) -> dict[str, Any]:
    """The speed options ``config`` sets: on resume they replace the checkpoint's, and the
    ones it leaves alone (``precision`` ``auto``, a switch not given) keep the run's own."""
    given: dict[str, Any] = {}
    if config.precision != "auto":
        given["precision"] = config.precision
    for name in ("channels_last", "compile"):
        if getattr(config, name) is not None:
            given[name] = getattr(config, name)
    return given


def _has_4d_weights(model: nn.Module) -> bool:
    return any(t.dim() == 4 for t in [*model.parameters(), *model.buffers()])


@dataclass(frozen=True)
class Speed:
    """A run's precision (resolved: ``fp32``, ``bf16`` or ``fp16``), memory format and
    compilation, and what they do to the model, its inputs and the training step."""

    device_type: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def of(cls, config: TrainConfig, device: torch.device, note: Callable[[str], None]) -> Speed:
        """The speed of ``config`` on ``device``; a line to ``note`` where bf16 has no
        instructions on this CPU (it runs, emulated: correct but most likely slower)."""
        precision = resolve_precision(config.precision, device.type)
        if precision == "bf16" and device.type == "cpu" and native_bf16() is False:
            note(
                "note: --precision bf16: this CPU has no bf16 instructions (avx512_bf16, "
                "amx_bf16); autocast emulates them, most likely slower than fp32"
            )
        return cls(device.type, precision, bool(config.channels_last), bool(config.compile))

    @property
    def scaled(self) -> bool:
        """Whether losses are scaled (fp16: its gradients underflow without)."""
        return self.precision == "fp16"

    def autocast(self) -> torch.autocast:
        """The context of every forward pass and loss, in training and evaluation alike."""
        return torch.autocast(
            self.device_type, dtype=_DTYPES[self.precision], enabled=self.precision != "fp32"
        )

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled for fp16 only (its ``state_dict`` is then empty)."""
        return torch.amp.GradScaler("cuda", enabled=self.scaled)

    def prepare(self, model: nn.Module, note: Callable[[str], None] = lambda _: None) -> None:
        """Channels-last, then compiled in place (``nn.Module.compile``: the same object and
        parameter names, so checkpoints hold the plain model's keys)."""
        if self.channels_last:
            if not _has_4d_weights(model):
                note(
                    f"note: --channels-last: {type(model).__name__} has no 4-D weights; "
                    "it trains as it would without"
                )
            model.to(memory_format=torch.channels_last)
        if self.compile:
            if any(isinstance(m, nn.RNNBase) for m in model.modules()):
                # Without it Dynamo skips an LSTM's or GRU's forward: the "compiled" model
                # would silently run eager (as for the compile runtime, zoo.plugins.eager).
                import torch._dynamo as dynamo  # here: only a compiled run imports Dynamo

                dynamo.config.allow_rnn = True
            model.compile()

    def inputs(self, x: Tensor) -> Tensor:
        """``x`` in the model's memory format: image batches (4-D, floating) channels-last."""
        if self.channels_last and x.dim() == 4 and x.is_floating_point():
            return x.contiguous(memory_format=torch.channels_last)
        return x
