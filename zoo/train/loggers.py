"""Where training progress goes: the terminal (a bar when interactive) and TensorBoard."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from zoo.errors import one_line

__all__ = ["TensorBoardLogger", "progress_bar"]


def progress_bar(
    batches: Iterable[Any], total: int, description: str, enabled: bool
) -> tuple[Iterator[Any], Callable[[Callable[[], dict[str, str]]], None], Callable[[], None]]:
    """Wrap ``batches`` in a tqdm bar on a terminal; elsewhere, iterate silently.

    Returns the iterator, a function to set the bar's postfix and one to close it. The postfix
    is given as a function, called only where there is a bar: what it shows (the loss as a
    Python float) costs a device synchronisation per step that a run without a bar skips.
    """
    if enabled and sys.stderr.isatty():
        bar = tqdm(batches, total=total, desc=description, leave=False, dynamic_ncols=True)
        return iter(bar), lambda info: bar.set_postfix(info(), refresh=False), bar.close
    return iter(batches), lambda info: None, lambda: None


@contextlib.contextmanager
def _uncompiled(model: nn.Module) -> Iterator[None]:
    """``model`` called eagerly while the block runs, where ``nn.Module.compile`` compiled it
    (torch.jit cannot trace a Dynamo-compiled call): its compiled call is set aside."""
    compiled = getattr(model, "_compiled_call_impl", None)
    if compiled is None:
        yield
        return
    model._compiled_call_impl = None
    try:
        yield
    finally:
        model._compiled_call_impl = compiled


class TensorBoardLogger:
    """Scalars (loss, accuracy, learning rate), images and the model graph."""

    def __init__(self, log_dir: Path) -> None:
        # here: tensorboard takes a second to import, and a run may not log to it
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def images(
        self, tag: str, images: torch.Tensor, step: int, value_range: tuple[float, float]
    ) -> None:
        low, high = value_range
        scaled = ((images.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
        self.writer.add_images(tag, scaled, step)

    def graph(self, model: nn.Module, example: torch.Tensor) -> str | None:
        """Add the model graph; returns why not where it does not trace."""
        # add_graph traces with torch.jit.trace (and torch.jit.trace_method for the forward):
        # their deprecation warnings are TensorBoard's business here, silenced for this call.
        try:
            with warnings.catch_warnings(), _uncompiled(model):
                warnings.filterwarnings(
                    "ignore",
                    message=r"`torch\.jit\.trace(_method)?` is deprecated",
                    category=FutureWarning,
                )
                self.writer.add_graph(model, example)
        except Exception as exc:
            return one_line(exc)
        return None

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
