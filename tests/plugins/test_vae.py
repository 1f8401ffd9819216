import json

import pytest
import torch
from torch import nn

import zoo
from zoo.plugins.vae import VAEMetrics, vae_loss


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


# --- VAE -------------------------------------------------------------------------------------


def _vae_batch(batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, 8, 8, generator=generator) * 2 - 1
    recon = (x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(-1, 1)
    mu = torch.randn(batch, 6, 2, 2, generator=generator)
    logvar = 0.5 * torch.randn(batch, 6, 2, 2, generator=generator)
    return recon, x, mu, logvar


@pytest.mark.parametrize("kld_weight", [1.0, 0.01])
def test_vae_metrics_match_vae_loss(kld_weight: float) -> None:
    sizes = [5, 2, 9]
    batches = [_vae_batch(b, seed) for seed, b in enumerate(sizes)]
    metrics = VAEMetrics(kld_weight=kld_weight)
    for batch in batches:
        metrics.update(*batch)
    result = metrics.compute()

    n = sum(sizes)
    totals = [float(vae_loss(*b, kld_weight=kld_weight).total) for b in batches]
    recon, x, mu, logvar = (torch.cat(parts).double() for parts in zip(*batches, strict=True))
    expected_kld = float(-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / n
    assert result["samples"] == n
    expected_loss = sum(b * t for b, t in zip(sizes, totals, strict=True)) / n
    expected_mse = float(((recon - x) ** 2).mean())
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert result["reconstruction_mse"] == pytest.approx(expected_mse, rel=1e-6)
    assert result["kld"] == pytest.approx(expected_kld, rel=1e-6)
    assert json.loads(json.dumps(result)) == result


def test_vae_metrics_one_batch_is_vae_loss() -> None:
    batch = _vae_batch(6, seed=3)
    metrics = VAEMetrics()
    metrics.update(*batch)
    result = metrics.compute()
    expected = vae_loss(*batch)
    assert result["loss"] == pytest.approx(float(expected.total), rel=1e-6)
    assert result["reconstruction_mse"] == pytest.approx(float(expected.reconstruction), rel=1e-6)
    assert result["kld"] == pytest.approx(float(expected.kld) / 6, rel=1e-6)


def test_vae_metrics_reset_empty_and_bad_shapes() -> None:
    metrics = VAEMetrics()
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
    recon, x, mu, logvar = _vae_batch(4, seed=0)
    metrics.update(recon[:0], x[:0], mu[:0], logvar[:0])
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
    metrics.update(recon.requires_grad_(), x, mu, logvar)
    assert metrics.compute()["samples"] == 4
    metrics.reset()
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
    with pytest.raises(ValueError, match="same shape"):
        metrics.update(recon[:, :1], x, mu, logvar)
    with pytest.raises(ValueError, match="same shape"):
        metrics.update(recon, x, mu, logvar[:, :1])
    with pytest.raises(ValueError, match="batch dimension"):
        metrics.update(recon, x, mu[:2], logvar[:2])
