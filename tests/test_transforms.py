"""Scriptable preprocessing: agreement with torchvision's PIL transforms, and exportability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import zoo
from zoo.export import onnx as zoo_onnx
from zoo.export import pt2, torchscript
from zoo.registry import InputSpec
from zoo.transforms import (
    MNIST,
    CenterCrop,
    Normalize,
    Resize,
    ToChannels,
    ToFloat,
    default_transform,
    describe_transform,
)


def _images(batch: int, height: int, width: int, channels: int, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images (blurred noise), closer to photos than white noise."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, channels, height // 4 + 1, width // 4 + 1, generator=gen)
    smooth = torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic")
    return (smooth.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize(("size", "target"), [((56, 48), (28, 28)), ((20, 20), (32, 32))])
def test_matches_torchvision_pil_pipeline(size: tuple[int, int], target: tuple[int, int]) -> None:
    """Within 3/255 before normalisation (so 3/255/std after it).

    PIL resizes and converts to grey in uint8, rounding at each step; the modules work in
    float32. Measured here the largest difference is 1-2 grey levels.
    """
    images = _images(4, *size, channels=3)
    ours = torch.nn.Sequential(ToFloat(), Resize(*target), ToChannels(1), Normalize(*MNIST))(images)
    reference = T.Compose(
        [
            T.Grayscale(num_output_channels=1),
            T.Resize(target),
            T.ToTensor(),
            T.Normalize(*MNIST),
        ]
    )
    expected = torch.stack([reference(Image.fromarray(img.numpy())) for img in images])
    assert ours.shape == expected.shape == (4, 1, *target)
    assert (ours - expected).abs().max().item() <= 3 / 255 / MNIST[1][0]


def test_center_crop_and_channel_repeat_match_torchvision() -> None:
    images = _images(2, 40, 36, channels=1)
    ours = torch.nn.Sequential(ToFloat(), CenterCrop(28, 28), ToChannels(3))(images)
    reference = T.Compose([T.CenterCrop(28), T.Grayscale(3), T.ToTensor()])
    expected = torch.stack([reference(Image.fromarray(img.numpy()[:, :, 0])) for img in images])
    torch.testing.assert_close(ours, expected, atol=1 / 255, rtol=0)


@pytest.mark.parametrize(
    ("name", "shape", "value_range"),
    [
        ("lenet", (1, 28, 28), (-0.4243, 2.8216)),
        ("vae", (3, 32, 32), (-1, 1)),
        ("resnet18", (3, 224, 224), (-2.118, 2.641)),
    ],
)
def test_default_transform_shapes_raw_images_for_the_model(
    name: str, shape: tuple[int, ...], value_range: tuple[float, float]
) -> None:
    spec = zoo.get_spec(name)
    pipeline = default_transform(spec.input)
    assert pipeline is not None
    for layout_last, images in (
        (True, _images(3, 50, 60, 3)),
        (False, _images(3, 50, 60, 3).permute(0, 3, 1, 2)),
    ):
        out = default_transform(spec.input, channels_last=layout_last)(images)  # type: ignore[misc]
        assert out.shape == (3, *shape) and out.dtype == torch.float32
        assert value_range[0] <= out.min().item() and out.max().item() <= value_range[1]


def test_token_models_have_no_image_pipeline() -> None:
    assert default_transform(zoo.get_spec("lstm").input) is None
    assert describe_transform(None) == []


def test_describe_lists_the_steps_in_order() -> None:
    steps = describe_transform(default_transform(zoo.get_spec("lenet").input))
    json.dumps(steps)
    assert [s["op"] for s in steps] == ["ToFloat", "Resize", "ToChannels", "Normalize"]
    assert steps[1] == {"op": "Resize", "height": 28, "width": 28}
    assert steps[3]["mean"] == pytest.approx([0.1307]) and steps[3]["std"] == pytest.approx(
        [0.3081]
    )


def test_pipeline_scripts_and_exports(tmp_path: Path) -> None:
    pipeline = torch.nn.Sequential(
        ToFloat(), Resize(28, 28), ToChannels(1), Normalize(*MNIST)
    ).eval()
    spec = InputSpec((56, 48, 3), dtype="uint8", value_range=(0, 255), name="image")
    scripted = torchscript.script(pipeline)
    program = pt2.export_program(pipeline, spec.example(2), spec).module()
    path = zoo_onnx.export_onnx(
        pipeline, spec.example(2), spec, tmp_path / "p.onnx", output_names=["pixels"]
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = spec.example(batch, seed=batch)
        expected = pipeline(x)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(program(x), expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(
            session.run(None, {"image": x.numpy()})[0], expected.numpy(), atol=1e-5
        )
