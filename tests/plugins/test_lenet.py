import pytest
import torch

import zoo


def test_lenet5_on_28x28_pads_the_first_conv_and_keeps_16x5x5() -> None:
    model = zoo.create_model("lenet")
    assert model.features[0].padding == (2, 2)
    assert model.classifier[1].in_features == 16 * 5 * 5
    # conv1 156 + conv2 2,416 + fc 48,120 + 10,164 + 850
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_cifar_net_variant() -> None:
    model = zoo.create_model("lenet", in_channels=3, input_size=32).eval()
    assert model.features[0].padding == (0, 0)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == 62_006


def test_no_softmax_at_the_end() -> None:
    assert isinstance(zoo.create_model("lenet").classifier[-1], torch.nn.Linear)


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"in_channels": -1}])
def test_bad_sizes_are_refused(kwargs: dict) -> None:
    with pytest.raises(zoo.InvalidArgumentsError, match="must be a positive integer"):
        zoo.create_model("lenet", **kwargs)
