from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import zoo
from zoo.plugins.resnet import ResidualBlock


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "count"),
    [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)],
)
def test_torchvision_backbones_match_reference_parameter_counts(name: str, count: int) -> None:
    assert _params(zoo.create_model(name, num_classes=1000)) == count


def test_new_head_replaces_fc() -> None:
    model = zoo.create_model("resnet18", num_classes=4)
    assert isinstance(model.fc, torch.nn.Linear)
    assert (model.fc.in_features, model.fc.out_features) == (512, 4)


def test_freeze_stops_gradients_for_the_first_n_tensors() -> None:
    model = zoo.create_model("resnet18", freeze=10)
    flags = [p.requires_grad for p in model.parameters()]
    assert flags[:10] == [False] * 10 and all(flags[10:])
    with pytest.raises(zoo.InvalidArgumentsError, match="out of range: this model has 62"):
        zoo.create_model("resnet18", freeze=1000)


def test_single_channel_stem() -> None:
    model = zoo.create_model("resnet18", in_channels=1).eval()
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_backbone_weights_are_loaded_before_the_new_head(tmp_path: Path, suffix: str) -> None:
    reference = torchvision.models.resnet18(weights=None)
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    model = zoo.create_model("resnet18", weights=str(path), num_classes=3)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert model.fc.out_features == 3


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11(weights=None).state_dict(), path)
    with pytest.raises(zoo.WeightsError, match="do not fit"):
        zoo.create_model("resnet18", weights=str(path))


def test_pickled_objects_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": torchvision.models.resnet18(weights=None)}, path)  # a whole module
    with pytest.raises(zoo.WeightsError, match="weights_only=True"):
        zoo.create_model("resnet18", weights=str(path))


def test_unknown_weights_name_lists_the_valid_ones() -> None:
    with pytest.raises(zoo.WeightsError, match="neither an existing file nor one of IMAGENET1K_V1"):
        zoo.create_model("resnet18", weights="IMAGENET_BEST")


def test_download_offline_fails_with_where_to_put_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(zoo.WeightsError) as info:
        zoo.create_model("resnet18", weights="DEFAULT")
    message = str(info.value)
    assert "could not download ResNet18_Weights.IMAGENET1K_V1" in message
    assert f"put resnet18-f37072fd.pth in {tmp_path / 'checkpoints'}" in message
    assert "weights=PATH" in message


def test_course_residual_block_adds_its_input() -> None:
    block = ResidualBlock(4)
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(block(x), torch.relu(x))


def test_course_resnet_flattens_512_features() -> None:
    assert zoo.create_model("resnet").fc.in_features == 512
