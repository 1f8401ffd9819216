import pytest
import torch
import torch.nn.functional as F

import zoo


def _notes_bam_forward(bam, x):
    """The notes' BAM.forward (002 section 49), with the module's own weights."""
    pooled = bam.pool(x)
    b, c, w, h = pooled.size()
    q = bam.query_conv(pooled).view(b, -1, w * h).permute(0, 2, 1)
    k = bam.key_conv(pooled).view(b, -1, w * h)
    energy = (bam.key_channels**-0.5) * torch.bmm(q, k)
    attention = torch.softmax(energy, dim=-1)
    v = bam.value_conv(pooled).view(b, -1, w * h)
    out = torch.bmm(v, attention.permute(0, 2, 1)).view(b, c, w, h)
    out = F.interpolate(out, [w * bam.ds, h * bam.ds])
    return out + x


def test_bam_keeps_the_input_shape_and_matches_the_notes() -> None:
    bam = zoo.create_model("bam").eval()
    x = torch.randn(2, 64, 32, 48)
    with torch.no_grad():
        out = bam(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, _notes_bam_forward(bam, x))


def test_gamma_starts_as_identity_and_learns() -> None:
    bam = zoo.create_model("bam", in_channels=16, ds=4, gamma=True)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(bam(x), x)
    bam(x).square().sum().backward()
    assert bam.gamma.grad is not None and bam.gamma.grad.abs().item() > 0


def test_sizes_not_divisible_by_ds_are_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        zoo.create_model("bam")(torch.randn(1, 64, 30, 32))


def test_too_few_channels_is_refused() -> None:
    with pytest.raises(zoo.InvalidArgumentsError, match="at least 8 channels"):
        zoo.create_model("bam", in_channels=4)


def test_bam_resnet_puts_a_bam_after_each_stage() -> None:
    model = zoo.create_model("bam_resnet")
    blocks = [m for m in model.modules() if type(m).__name__ == "BAM"]
    assert [(b.ds, b.value_conv.in_channels) for b in blocks] == [(4, 16), (2, 32)]
