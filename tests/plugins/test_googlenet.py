import torch

import zoo
from zoo.plugins.googlenet import InceptionA


def test_inception_concatenates_four_branches_to_88_channels() -> None:
    block = InceptionA(10).eval()
    out = block(torch.zeros(2, 10, 12, 12))
    assert out.shape == (2, 88, 12, 12)
    widths = [
        block.branch1x1(torch.zeros(1, 10, 4, 4)).shape[1],
        block.branch5x5(torch.zeros(1, 10, 4, 4)).shape[1],
        block.branch3x3(torch.zeros(1, 10, 4, 4)).shape[1],
        block.branch_pool(torch.zeros(1, 10, 4, 4)).shape[1],
    ]
    assert widths == [16, 24, 24, 24]


def test_course_layout_flattens_1408_features() -> None:
    model = zoo.create_model("googlenet")
    assert model.fc.in_features == 88 * 4 * 4 == 1408
    assert model.features[4].in_channels == 88 and model.features[4].out_channels == 20
