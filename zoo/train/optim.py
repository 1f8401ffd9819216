"""Optimizers, LR schedulers and linear warm-up: torch.optim's, built from the run's options."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import lr_scheduler

from zoo.train.config import TrainConfig

__all__ = ["Warmup", "build_optimizer", "build_scheduler", "extend_schedule"]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("every parameter is frozen: lower --freeze")
    kind: type[torch.optim.Optimizer]
    options: dict[str, Any] = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        kind, options["momentum"] = torch.optim.SGD, config.momentum
    elif config.optimizer == "adam":
        kind = torch.optim.Adam
    else:
        kind = torch.optim.AdamW
    try:
        # One kernel for every parameter's update, where the parameters' device has one (CPU
        # and CUDA do): the default (foreach) update to rounding, without its
        # per-tensor dispatch. The course ResNet trains about 5% faster on CPU with it.
        return kind(params, fused=True, **options)
    except (RuntimeError, ValueError):  # a device or dtype without fused kernels
        return kind(params, **options)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """An epoch-level scheduler (``None`` for ``none``); ``plateau`` steps on the monitor."""
    name = config.scheduler
    if name == "none":
        return None
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if name == "multistep":
        return lr_scheduler.MultiStepLR(
            optimizer, milestones=list(config.milestones), gamma=config.gamma
        )
    if name == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=config.gamma)
    if name == "cosine":
        t_max = max(1, config.epochs - config.warmup_epochs)
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)
    if name == "cosine-restarts":
        return lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=config.restart_period)
    if name == "plateau":
        mode: Literal["min", "max"] = "max" if "accuracy" in config.monitor else "min"
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=config.gamma, patience=config.plateau_patience
        )
    raise ValueError(f"unknown scheduler {name!r}")


def extend_schedule(
    scheduler: Any, optimizer: torch.optim.Optimizer, config: TrainConfig, planned: int
) -> str | None:
    """Fit a resumed run's schedule to its new ``--epochs`` (``config.epochs``; it was planned
    for ``planned``), as timm does: the schedule is a function of the total, rebuilt for the
    new one at the epoch the run stopped. Only ``cosine`` depends on the total (the others
    step by fixed periods or on the monitor); without this, resuming a finished 2-epoch cosine
    run with ``--epochs 4`` trained epochs 3 and 4 at the schedule's end, learning rate 0.
    Returns what changed, for the run's log, or None."""
    if not isinstance(scheduler, lr_scheduler.CosineAnnealingLR) or planned == config.epochs:
        return None
    t_max = max(1, config.epochs - config.warmup_epochs)
    t = min(scheduler.last_epoch, t_max)
    low = scheduler.eta_min
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = low + (base - low) * (1 + math.cos(math.pi * t / t_max)) / 2
    scheduler.T_max = t_max
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what it reports
    return (
        f"--epochs {config.epochs} (the run was planned for {planned}): the cosine schedule "
        f"is rebuilt for {config.epochs} epochs; learning rate now "
        f"{optimizer.param_groups[0]['lr']:.3g}"
    )


class Warmup:
    """Linear warm-up over the first ``steps`` optimizer steps, from lr/steps to lr.

    It scales each group's ``initial_lr`` (set by the schedulers, or by this class) and
    leaves the epoch scheduler alone until warm-up is over.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int) -> None:
        self.optimizer = optimizer
        self.steps = steps
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        if steps > 0:
            self.apply(0)

    def active(self, step: int) -> bool:
        return step < self.steps

    def apply(self, step: int) -> None:
        """Set the learning rate for optimizer step ``step`` (0-based) during warm-up."""
        if step >= self.steps:
            return
        factor = (step + 1) / self.steps
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
