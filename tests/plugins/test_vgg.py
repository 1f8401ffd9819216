import pytest
import torch

import zoo


def test_vgg16_has_the_reference_parameter_count() -> None:
    model = zoo.create_model("vgg_head", num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 138_357_544


def test_replace_head_swaps_classifier_6() -> None:
    model = zoo.create_model("vgg_head", num_classes=5)
    assert (model.classifier[6].in_features, model.classifier[6].out_features) == (4096, 5)


def test_append_head_adds_a_layer_after_the_1000_way_one() -> None:
    model = zoo.create_model("vgg_head", num_classes=5, head="append", arch="vgg11").eval()
    assert model.classifier[6].out_features == 1000
    assert (model.classifier.add_linear.in_features, model.classifier.add_linear.out_features) == (
        1000,
        5,
    )
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)  # the adaptive pool allows 32x32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "vgg15"}, "arch='vgg15' is not one of vgg11, vgg13, vgg16, vgg19"),
        ({"head": "prepend"}, "head='prepend' is not one of replace, append"),
    ],
)
def test_bad_options_name_the_valid_ones(kwargs: dict, message: str) -> None:
    with pytest.raises(zoo.InvalidArgumentsError, match=message):
        zoo.create_model("vgg_head", **kwargs)
