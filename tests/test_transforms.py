"""Scriptable preprocessing: agreement with torchvision's PIL transforms, and exportability."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.export import Dim
from torchvision import transforms as T

import zoo
from zoo.plugins import onnx as zoo_onnx
from zoo.plugins import torchscript
from zoo.registry import InputSpec
from zoo.transforms import (
    CIFAR,
    IMAGENET,
    MNIST,
    CenterCrop,
    Normalization,
    Normalize,
    Resize,
    ToChannels,
    ToFloat,
    default_transform,
    describe_transform,
)

#: PIL rounds to uint8 after resizing and again after the grey conversion (<= 0.5 level each)
#: and uses fixed-point filter weights; the modules stay in float32. Largest difference
#: measured here over these images: 1.13 grey levels.
PIL_TOLERANCE = 1.5 / 255


def _smooth(batch: int, height: int, width: int, channels: int, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 ``[B, H, W, C]`` images (upscaled noise), closer to photos."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, channels, height // 4 + 1, width // 4 + 1, generator=gen)
    smooth = nn.functional.interpolate(noise, size=(height, width), mode="bicubic")
    return (smooth.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _noise(batch: int, height: int, width: int, channels: int, seed: int = 0) -> torch.Tensor:
    """Uniform random uint8 ``[B, H, W, C]`` images: every pixel an edge, the hardest case."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, height, width, channels), generator=gen, dtype=torch.uint8)


def _digit(size: int) -> torch.Tensor:
    """An MNIST-like "9" (white strokes on black, 28 x 28), scaled by PIL: ``[1, S, S, 1]``."""
    img = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 4, 19, 14), outline=255, width=3)
    draw.line((18, 9, 16, 24), fill=255, width=3)
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(img))[None, :, :, None]


def _pil_reference(
    images: torch.Tensor, target: tuple[int, int], channels: int, norm: Normalization
) -> torch.Tensor:
    """torchvision's classic pipeline, one PIL image at a time."""
    steps: list[nn.Module] = [T.Resize(target)]
    if images.shape[3] != channels:
        steps.append(T.Grayscale(num_output_channels=channels))
    pipeline = T.Compose([*steps, T.ToTensor(), T.Normalize(*norm)])
    arrays = [img.numpy() if img.shape[2] == 3 else img.numpy()[:, :, 0] for img in images]
    return torch.stack([pipeline(Image.fromarray(a)) for a in arrays])


@pytest.mark.parametrize(
    ("images", "target", "channels", "norm"),
    [
        pytest.param(_smooth(4, 56, 48, 3), (28, 28), 1, MNIST, id="photo-down-rgb-to-grey"),
        pytest.param(_noise(4, 56, 48, 3), (28, 28), 1, MNIST, id="noise-down-rgb-to-grey"),
        pytest.param(_noise(3, 20, 20, 3), (32, 32), 3, CIFAR, id="noise-up-rgb"),
        pytest.param(_smooth(2, 57, 31, 3), (13, 40), 3, CIFAR, id="photo-odd-sizes"),
        pytest.param(_noise(2, 100, 90, 1), (224, 224), 3, IMAGENET, id="noise-up-grey-to-rgb"),
        pytest.param(_digit(112), (28, 28), 1, MNIST, id="digit-down"),
        pytest.param(_digit(14), (28, 28), 1, MNIST, id="digit-up"),
        pytest.param(_digit(28), (224, 224), 3, IMAGENET, id="digit-up-to-rgb"),
        pytest.param(_noise(2, 28, 28, 3), (28, 28), 1, MNIST, id="same-size"),
    ],
)
def test_matches_torchvision_pil_pipeline(
    images: torch.Tensor, target: tuple[int, int], channels: int, norm: Normalization
) -> None:
    """Within PIL_TOLERANCE (1.5/255) before normalisation, so 1.5/255/std after it.

    PIL works in uint8 and rounds after each step (resize, grey conversion), at most half a
    grey level each, and its filter weights are fixed-point; the modules work in float32.
    """
    ours = nn.Sequential(ToFloat(), Resize(*target), ToChannels(channels), Normalize(*norm))
    expected = _pil_reference(images, target, channels, norm)
    out = ours(images)
    assert out.shape == expected.shape == (images.shape[0], channels, *target)
    std = torch.tensor(norm[1]).view(1, -1, 1, 1)
    assert ((out - expected) * std).abs().max().item() <= PIL_TOLERANCE


@pytest.mark.parametrize(("height", "width"), [(40, 36), (31, 29), (35, 33), (28, 28)])
def test_center_crop_matches_torchvision_exactly(height: int, width: int) -> None:
    """The window is placed as torchvision places it, odd margins included (round half even)."""
    images = _noise(2, height, width, 1)
    ours = nn.Sequential(ToFloat(), CenterCrop(28, 26), ToChannels(3))(images)
    reference = T.Compose([T.CenterCrop((28, 26)), T.Grayscale(3), T.ToTensor()])
    expected = torch.stack([reference(Image.fromarray(img.numpy()[:, :, 0])) for img in images])
    torch.testing.assert_close(ours, expected, atol=0, rtol=0)
    chw = images.permute(0, 3, 1, 2)
    assert torch.equal(CenterCrop(28, 26)(chw), T.CenterCrop((28, 26))(chw))


def test_center_crop_refuses_a_smaller_image() -> None:
    with pytest.raises(IndexError):
        CenterCrop(28, 28)(torch.zeros(1, 1, 27, 40))


def test_resize_to_the_same_size_is_exact() -> None:
    x = torch.rand(2, 3, 28, 30)
    assert torch.equal(Resize(28, 30)(x), x)


def test_to_channels_refuses_other_counts() -> None:
    assert torch.equal(ToChannels(4)(x := torch.rand(1, 4, 2, 2)), x)
    with pytest.raises(ValueError, match="1 and 3"):
        ToChannels(3)(torch.rand(1, 2, 4, 4))


@pytest.mark.parametrize(
    ("name", "shape"),
    [("lenet", (1, 28, 28)), ("vae", (3, 32, 32)), ("resnet18", (3, 224, 224))],
)
def test_default_transform_maps_raw_images_to_the_model_input(
    name: str, shape: tuple[int, int, int]
) -> None:
    """Any raw size and either layout gives the spec's shape; black and white give its range."""
    spec = zoo.get_spec(name).input
    assert spec.shape == shape and spec.mean is not None and spec.std is not None
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    low, high = -mean / std, (1 - mean) / std
    for channels_last in (True, False):
        pipeline = default_transform(spec, channels_last=channels_last)
        assert pipeline is not None
        for raw_channels, (height, width) in ((3, (50, 61)), (1, (300, 17))):
            images = _smooth(3, height, width, raw_channels)
            images[0] = 0
            images[1] = 255
            if not channels_last:
                images = images.permute(0, 3, 1, 2)
            out = pipeline(images)
            assert out.shape == spec.batched_shape(3) and out.dtype == torch.float32
            torch.testing.assert_close(out[0:1], low.expand(1, *shape))
            torch.testing.assert_close(out[1:2], high.expand(1, *shape))
            assert ((out >= low - 1e-6) & (out <= high + 1e-6)).all()
            value_low, value_high = spec.value_range  # rounded to 4 decimals by the spec
            assert value_low - 1e-4 <= out.min().item() and out.max().item() <= value_high + 1e-4


def test_token_models_have_no_image_pipeline() -> None:
    assert default_transform(zoo.get_spec("lstm").input) is None
    assert describe_transform(None) == []


def test_describe_lists_the_steps_in_order() -> None:
    steps = describe_transform(default_transform(zoo.get_spec("lenet").input))
    assert json.loads(json.dumps(steps)) == steps
    assert steps == [
        {"op": "ToFloat", "channels_last": True},
        {"op": "Resize", "height": 28, "width": 28},
        {"op": "ToChannels", "channels": 1},
        {"op": "Normalize", "mean": [0.1307], "std": [0.3081]},
    ]
    nested = nn.Sequential(nn.Sequential(ToFloat(False), CenterCrop(4, 5)), nn.Identity())
    assert describe_transform(nested) == [
        {"op": "ToFloat", "channels_last": False},
        {"op": "CenterCrop", "height": 4, "width": 5},
        {"op": "Identity"},
    ]
    assert describe_transform(Normalize(*IMAGENET))[0]["std"] == list(IMAGENET[1])


def _resnet18_pipeline() -> nn.Module:
    pipeline = default_transform(zoo.get_spec("resnet18").input)
    assert pipeline is not None
    return pipeline


#: (pipeline builder, raw input spec) for the export tests; dynamic axes as the spec says.
_EXPORTED: dict[str, tuple[Callable[[], nn.Module], InputSpec]] = {
    "grey-resize-channels-last": (
        lambda: nn.Sequential(ToFloat(), Resize(28, 28), ToChannels(1), Normalize(*MNIST)),
        InputSpec(
            (56, 48, 3),
            dtype="uint8",
            value_range=(0, 255),
            name="image",
            dynamic_axes={0: "batch", 1: "height", 2: "width"},
        ),
    ),
    "rgb-crop-channels-first": (
        lambda: nn.Sequential(
            ToFloat(False), CenterCrop(32, 30), Resize(40, 36), ToChannels(3), Normalize(*CIFAR)
        ),
        InputSpec(
            (1, 50, 61),
            dtype="uint8",
            value_range=(0, 255),
            name="image",
            dynamic_axes={0: "batch", 2: "height", 3: "width"},
        ),
    ),
    "bundle-resnet18-batch-only": (
        _resnet18_pipeline,
        # raw images of the model's size, dynamic batch only
        InputSpec((224, 224, 3), dtype="uint8", value_range=(0, 255), name="image"),
    ),
}


@pytest.mark.parametrize("case", list(_EXPORTED))
def test_scripted_exported_and_onnx_match_eager(case: str, tmp_path: Path) -> None:
    """TorchScript, torch.export and ONNX (onnxruntime) equal eager within 1e-5.

    Inputs of other batch sizes (1 and 3) and, where the spec makes them dynamic, other
    heights and widths than the example the graphs were exported from.
    """
    build, spec = _EXPORTED[case]
    pipeline = build().eval()
    example = spec.example(2)
    scripted = torchscript.script(pipeline)
    dims = {axis: Dim(label, min=1, max=4096) for axis, label in spec.dynamic_axes.items()}
    program = torch.export.export(pipeline, (example,), dynamic_shapes=(dims,)).module()
    path = zoo_onnx.export_onnx(pipeline, example, spec, tmp_path / "p.onnx", output_names=["x"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, grow in ((1, 0), (3, 7)):
        shape = list(spec.batched_shape(batch))
        for axis in spec.dynamic_axes:
            if axis > 0:
                shape[axis] -= grow if axis % 2 else -grow  # one side shrinks, one grows
        gen = torch.Generator().manual_seed(batch)
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
        expected = pipeline(x)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(program(x), expected, atol=1e-5, rtol=0)
        (onnx_out,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(onnx_out, expected.numpy(), atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_follows_the_input() -> None:
    """A pipeline left on the CPU runs CUDA inputs on CUDA; moved to CUDA, it matches the CPU."""
    pipeline = nn.Sequential(
        ToFloat(), Resize(30, 30), CenterCrop(28, 28), ToChannels(1), Normalize(*MNIST)
    )
    images = _noise(3, 50, 61, 3)
    expected = pipeline(images)
    on_cpu = pipeline(images.cuda())
    assert on_cpu.device.type == "cuda"
    torch.testing.assert_close(on_cpu.cpu(), expected, atol=1e-5, rtol=0)
    scripted = torchscript.script(pipeline.cuda())
    torch.testing.assert_close(scripted(images.cuda()).cpu(), expected, atol=1e-5, rtol=0)
