import pytest
import torch
from torch import nn

import zoo
from zoo.plugins.vae import vae_loss


def _notes_loss(recon_x, x, mu, logvar):
    """The notes' loss_vae (002 section 32), verbatim but for the criterion argument."""
    mse = nn.MSELoss()(recon_x, x)
    kld_element = mu.pow(2).add_(logvar.exp()).mul_(-1).add_(1).add_(logvar)
    kld = torch.sum(kld_element).mul_(-0.5)
    return mse + kld


def test_loss_matches_the_formula_and_the_notes() -> None:
    g = torch.Generator().manual_seed(0)
    x, recon = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.rand(4, 3, 32, 32, generator=g)
    mu, logvar = torch.randn(4, 48, 4, 4, generator=g), torch.randn(4, 48, 4, 4, generator=g)
    loss = vae_loss(recon, x, mu, logvar)
    mse = ((recon - x) ** 2).mean()
    kld = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()
    torch.testing.assert_close(loss.reconstruction, mse)
    torch.testing.assert_close(loss.kld, kld)
    torch.testing.assert_close(loss.total, mse + kld)
    torch.testing.assert_close(loss.total, _notes_loss(recon, x, mu.clone(), logvar.clone()))
    torch.testing.assert_close(
        vae_loss(recon, x, mu, logvar, kld_weight=0.5).total, mse + 0.5 * kld
    )


def test_elbo_reduction_scales_the_kld_per_element() -> None:
    g = torch.Generator().manual_seed(1)
    x, recon = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    mu, logvar = torch.randn(4, 48, 4, 4, generator=g), torch.randn(4, 48, 4, 4, generator=g)
    notes, elbo = vae_loss(recon, x, mu, logvar), vae_loss(recon, x, mu, logvar, reduction="elbo")
    torch.testing.assert_close(elbo.kld, notes.kld)
    torch.testing.assert_close(elbo.total, notes.reconstruction + notes.kld / x.numel())
    with pytest.raises(ValueError, match="reduction='mean' is not one of notes, elbo"):
        vae_loss(recon, x, mu, logvar, reduction="mean")


def test_kld_is_zero_for_the_prior() -> None:
    zeros = torch.zeros(2, 48, 4, 4)
    assert vae_loss(zeros, zeros, zeros, zeros).total.item() == pytest.approx(0.0)


def test_eval_uses_mu_and_train_samples() -> None:
    model = zoo.create_model("vae")
    x = zoo.get_spec("vae").example_input(2)
    model.eval()
    recon, mu, _ = model(x)
    torch.testing.assert_close(recon, model.decode(mu))
    model.train()
    torch.manual_seed(1)
    a = model(x)[0]
    b = model(x)[0]
    assert not torch.equal(a, b)
    assert recon.min() >= -1 and recon.max() <= 1  # tanh output, like the inputs


def test_encoder_layout_matches_the_notes() -> None:
    model = zoo.create_model("vae")
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 12),
        (12, 24),
        (24, 48),
        (24, 48),
        (48, 24),
        (24, 12),
        (12, 3),
    ]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
