"""A convolutional VAE (Kingma & Welling 2013, arXiv:1312.6114), its loss, and the task that
trains it (``vae``: reconstruction, no labels), registered through the same hooks a third
party uses."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from zoo.capabilities import recorded
from zoo.datasets import DataSplits
from zoo.errors import InvalidArgumentsError, UsageError
from zoo.hookspecs import ModelRegistrar, TaskRegistrar, hookimpl
from zoo.plots import save_reconstructions_png
from zoo.plugins._common import check_positive
from zoo.registry import InputSpec, ModelSpec, OutputSpec
from zoo.tasks import EpochLogger, Metrics, Task, TaskRun
from zoo.transforms import CIFAR


class VAE(nn.Module):
    """3x32x32 in [-1, 1] -> (reconstruction, mu, logvar); mu/logvar are [B, 48, 4, 4].

    Training samples z = mu + eps * exp(logvar / 2) with eps drawn on the input's device;
    eval mode uses z = mu, so inference is deterministic and comparable across runtimes.
    """

    def __init__(self, in_channels: int = 3, width: int = 12) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, width=width)
        w1, w2, w3 = width, 2 * width, 4 * width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, w1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(w1, w2, 4, stride=2, padding=1),
            nn.ReLU(),
        )
        self.enc_mu = nn.Sequential(nn.Conv2d(w2, w3, 4, stride=2, padding=1), nn.ReLU())
        self.enc_logvar = nn.Sequential(nn.Conv2d(w2, w3, 4, stride=2, padding=1), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(w3, w2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(w1, in_channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.enc_mu(h), self.enc_logvar(h)

    def reparametrize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        if not self.training:
            return mu
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparametrize(mu, logvar)), mu, logvar


class VAELoss(NamedTuple):
    total: Tensor
    reconstruction: Tensor
    kld: Tensor


VAE_REDUCTIONS = ("notes", "elbo")


def vae_loss(
    recon: Tensor,
    x: Tensor,
    mu: Tensor,
    logvar: Tensor,
    kld_weight: float = 1.0,
    reduction: str = "notes",
) -> VAELoss:
    """Reconstruction MSE (mean) + KLD, KLD = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)).

    ``reduction="notes"`` (named so in zoo 0.1) is the loss common in VAE tutorials: the KLD
    summed over the batch and the latent units, added to the per-element MSE. That KLD
    outweighs the MSE by thousands and collapses the posterior (mu = 0, reconstructions are
    the mean image). ``"elbo"`` divides the KLD by the number of elements of ``x``: the
    standard ELBO per element, independent of the batch size; the trainer uses it.
    ``VAELoss.kld`` is always the plain sum.
    """
    if reduction not in VAE_REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of {', '.join(VAE_REDUCTIONS)}")
    reconstruction = F.mse_loss(recon, x)
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    scale = 1.0 if reduction == "notes" else 1.0 / x.numel()
    return VAELoss(reconstruction + kld_weight * scale * kld, reconstruction, kld)


class VAEMetrics:
    """Accumulates :func:`vae_loss` over batches.

    ``compute`` returns "samples"; "loss", the mean of the batches' ``vae_loss(...).total``
    weighted by batch size; "reconstruction_mse", the per-element MSE over every sample;
    and "kld", the KL divergence per sample (summed over latent units, averaged over samples).
    """

    def __init__(self, kld_weight: float = 1.0, reduction: str = "notes") -> None:
        self.kld_weight = float(kld_weight)
        self.reduction = reduction
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._samples = 0
        self._loss_sum = 0.0
        self._squared_error_sum = 0.0
        self._elements = 0
        self._kld_sum = 0.0

    def merge(self, other: VAEMetrics) -> None:
        """Add the batches ``other`` has seen (another process of a data-parallel run)."""
        self._samples += other._samples
        self._loss_sum += other._loss_sum
        self._squared_error_sum += other._squared_error_sum
        self._elements += other._elements
        self._kld_sum += other._kld_sum

    def update(self, recon: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> None:
        """Add one batch (any device); an empty batch is ignored."""
        if recon.shape != x.shape:
            raise ValueError(
                f"recon and x must have the same shape, got {tuple(recon.shape)} "
                f"and {tuple(x.shape)}"
            )
        if mu.shape != logvar.shape:
            raise ValueError(
                f"mu and logvar must have the same shape, got {tuple(mu.shape)} "
                f"and {tuple(logvar.shape)}"
            )
        if x.ndim == 0 or mu.ndim == 0 or mu.shape[0] != x.shape[0]:
            raise ValueError(
                f"x and mu must share a batch dimension, got {tuple(x.shape)} and {tuple(mu.shape)}"
            )
        batch = int(x.shape[0])
        if batch == 0:
            return
        with torch.no_grad():
            losses = vae_loss(
                recon, x, mu, logvar, kld_weight=self.kld_weight, reduction=self.reduction
            )
            total, reconstruction, kld = torch.stack(list(losses)).tolist()
        self._samples += batch
        self._loss_sum += total * batch
        self._squared_error_sum += reconstruction * x.numel()
        self._elements += x.numel()
        self._kld_sum += kld

    def compute(self) -> dict[str, Any]:
        """The metrics over every sample so far; raises ValueError before any sample."""
        if self._samples == 0:
            raise ValueError("no samples: call update() with at least one batch before compute()")
        return {
            "samples": self._samples,
            "loss": self._loss_sum / self._samples,
            "reconstruction_mse": self._squared_error_sum / self._elements,
            "kld": self._kld_sum / self._samples,
        }


class _VAEAccumulator:
    """:class:`VAEMetrics` behind the task's ``Metrics`` interface."""

    def __init__(self, metrics: VAEMetrics) -> None:
        self.metrics = metrics

    def update(self, outputs: Any, x: Tensor, y: Tensor, loss: Tensor) -> None:
        recon, mu, logvar = (o.detach().float() for o in outputs)
        self.metrics.update(recon, x.float(), mu, logvar)

    def compute(self) -> dict[str, Any]:
        return self.metrics.compute()

    def merge(self, other: _VAEAccumulator) -> None:
        self.metrics.merge(other.metrics)


class VAETask(Task):
    """Trains a VAE (outputs ``(reconstruction, mu, logvar)``) to reconstruct its input: the
    labels are not used. Options: ``kld_weight`` (the weight of the KLD term) and ``loss``:
    ``elbo`` (the KLD per element, which trains well; the default) or ``notes`` (the tutorials'
    exact sum, which collapses the posterior)."""

    name = "vae"
    description = "reconstruction MSE + KLD of a (reconstruction, mu, logvar) model; image grid"
    metrics: ClassVar[Mapping[str, bool]] = {
        "loss": False,
        "reconstruction_mse": False,
        "kld": False,
    }
    monitor = "loss"
    #: The accuracy gate of an export: the mean squared error of each reconstruction.
    gate_metric = ("reconstruction_mse", False)

    def gate_targets(self, model_inputs: Tensor, targets: Tensor) -> Tensor:
        return model_inputs

    def gate_scores(self, outputs: Sequence[Tensor], targets: Tensor, postprocess: str) -> Tensor:
        error = (outputs[0].float() - targets.float()).square()
        return error.flatten(1).mean(dim=1)

    def __init__(self, kld_weight: float = 1.0, loss: str = "elbo") -> None:
        if isinstance(kld_weight, bool) or not isinstance(kld_weight, (int, float)):
            raise InvalidArgumentsError(f"kld_weight must be a number, got {kld_weight!r}")
        if not math.isfinite(kld_weight) or kld_weight < 0:
            raise InvalidArgumentsError(f"kld_weight must be finite and >= 0, got {kld_weight!r}")
        if loss not in VAE_REDUCTIONS:
            raise InvalidArgumentsError(f"loss={loss!r} is not one of {', '.join(VAE_REDUCTIONS)}")
        self.kld_weight = float(kld_weight)
        self.reduction = loss

    def check_model(self, spec: ModelSpec) -> None:
        shapes = [o.shape for o in spec.outputs]
        if len(shapes) != 3 or shapes[0] != spec.input.shape or shapes[1] != shapes[2]:
            raise UsageError(
                f"model {spec.name!r} outputs {', '.join(o.name for o in spec.outputs)}; task "
                f"{self.name!r} needs (reconstruction shaped like the input, mu, logvar)"
            )

    def default_data(self, spec: ModelSpec) -> str:
        return "mnist5k"

    def loss(self, outputs: Any, x: Tensor, y: Tensor) -> Tensor:
        recon, mu, logvar = outputs
        return vae_loss(
            recon.float(),
            x.float(),
            mu.float(),
            logvar.float(),
            kld_weight=self.kld_weight,
            reduction=self.reduction,
        ).total

    def new_metrics(self, run: TaskRun) -> Metrics:
        return _VAEAccumulator(VAEMetrics(self.kld_weight, reduction=self.reduction))

    def summary(self, values: Mapping[str, Any]) -> str:
        parts = [super().summary(values)]
        if "reconstruction_mse" in values:
            parts.append(f"mse {values['reconstruction_mse']:.4f} kld {values['kld']:.2f}")
        return " ".join(p for p in parts if p)

    def _reconstruct(self, model: nn.Module, dataset: Any, run: TaskRun) -> tuple[Tensor, Tensor]:
        """Eight samples and the model's reconstructions of them (the same eight every time)."""
        x = run.sample(dataset, 8)
        with torch.no_grad():
            return x, model.eval()(x)[0].float()

    def log_epoch(
        self, logger: EpochLogger, model: nn.Module, val: Any, run: TaskRun, epoch: int
    ) -> None:
        x, recon = self._reconstruct(model, val, run)
        value_range = run.spec.input.value_range
        if epoch == 1:
            logger.images("val/originals", x, epoch, value_range)
        logger.images("val/reconstructions", recon, epoch, value_range)

    def finish(
        self, model: nn.Module, test: Mapping[str, Any], splits: DataSplits, run: TaskRun
    ) -> dict[str, Any]:
        x, recon = self._reconstruct(model, splits.test, run)
        save_reconstructions_png(
            x.cpu(),
            recon.cpu(),
            run.run_dir / "reconstructions.png",
            value_range=run.spec.input.value_range,
        )
        return {}


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        ModelSpec(
            name="vae",
            capabilities=recorded("vae"),
            builder=VAE,
            task="vae",
            input=InputSpec.image((3, 32, 32), *CIFAR),
            outputs=(
                OutputSpec("reconstruction", (3, 32, 32)),
                OutputSpec("mu", (48, 4, 4)),
                OutputSpec("logvar", (48, 4, 4)),
            ),
            summary="Convolutional VAE for 3x32x32 images in [-1, 1]; eval uses z = mu",
            tags=("vision", "generative", "small"),
            source="Kingma & Welling 2013, Auto-Encoding Variational Bayes, arXiv:1312.6114",
        )
    )


@hookimpl
def zoo_register_tasks(registry: TaskRegistrar) -> None:
    registry.register(VAETask)
