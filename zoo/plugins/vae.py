"""The convolutional VAE of the notes (002 section 32) and its loss."""

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, recorded
from zoo.registry import InputSpec, ModelSpec, OutputSpec, Task
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

    ``reduction="notes"`` is the notes' loss exactly: the KLD summed over the batch and the
    latent units, added to the per-element MSE. That KLD outweighs the MSE by thousands and
    collapses the posterior (mu = 0, reconstructions are the mean image). ``"elbo"`` divides
    the KLD by the number of elements of ``x``: the standard ELBO per element, independent of
    the batch size; the trainer uses it. ``VAELoss.kld`` is always the plain sum.
    """
    if reduction not in VAE_REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not one of {', '.join(VAE_REDUCTIONS)}")
    reconstruction = F.mse_loss(recon, x)
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    scale = 1.0 if reduction == "notes" else 1.0 / x.numel()
    return VAELoss(reconstruction + kld_weight * scale * kld, reconstruction, kld)


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        ModelSpec(
            name="vae",
            capabilities=recorded("vae"),
            builder=VAE,
            task=Task.GENERATIVE,
            input=InputSpec.image((3, 32, 32), *CIFAR),
            outputs=(
                OutputSpec("reconstruction", (3, 32, 32)),
                OutputSpec("mu", (48, 4, 4)),
                OutputSpec("logvar", (48, 4, 4)),
            ),
            summary="Convolutional VAE for 3x32x32 images in [-1, 1]; eval uses z = mu",
            tags=("vision", "generative", "small"),
            source="notes 002 section 32; Kingma & Welling 2013",
        )
    )
