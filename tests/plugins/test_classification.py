import torch

from zoo.plugins.classification import random_shift


def test_shift_translates_each_image_by_whole_pixels_and_repeats_edges() -> None:
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 28 * 28, dtype=torch.float32).view(2, 3, 28, 28)
    out = random_shift(x)
    assert out.shape == x.shape
    for image, shifted in zip(x, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(shifted[:, 2:-2, 2:-2], image.roll((dy, dx), (1, 2))[:, 2:-2, 2:-2])
        ]
        assert len(matches) == 1  # exactly one integer translation explains the interior
    assert set(out.unique().tolist()) <= set(x.unique().tolist())  # no interpolation


def test_shift_is_reproducible_from_the_global_rng_and_varies_per_image() -> None:
    x = torch.rand(64, 1, 28, 28)
    torch.manual_seed(3)
    a = random_shift(x)
    torch.manual_seed(3)
    b = random_shift(x)
    assert torch.equal(a, b)
    assert sum(not torch.equal(a[i], x[i]) for i in range(64)) > 40


def test_tiny_images_are_left_alone() -> None:
    x = torch.rand(4, 1, 7, 7)
    assert random_shift(x) is x
