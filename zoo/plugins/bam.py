"""BAM, the Bottleneck Attention Module (Park et al. 2018, arXiv:1807.06514), alone and in a
classifier."""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from zoo.capabilities import recorded
from zoo.errors import InvalidArgumentsError
from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, logits
from zoo.plugins.resnet import ResidualBlock
from zoo.registry import InputSpec, ModelSpec, OutputSpec
from zoo.transforms import MNIST


class BAM(nn.Module):
    """Self-attention over an ``ds``-times pooled map, upsampled back and added to the input.

    q, k = 1x1 convs to C//8 channels, v = 1x1 conv to C; energy = q^T k * (C//8)^-0.5;
    out = v softmax(energy)^T, interpolated to the input size; returns ``out + input``,
    or ``gamma * out + input`` with a learnable gamma starting at 0 when ``gamma=True``.
    """

    def __init__(self, in_channels: int = 64, ds: int = 8, gamma: bool = False) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, ds=ds)
        if in_channels < 8:
            raise InvalidArgumentsError(
                f"in_channels={in_channels}: BAM needs at least 8 channels (keys use C // 8)"
            )
        self.ds = ds
        self.key_channels = in_channels // 8
        self.pool = nn.AvgPool2d(ds)
        self.query_conv = nn.Conv2d(in_channels, self.key_channels, 1)
        self.key_conv = nn.Conv2d(in_channels, self.key_channels, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.scale = self.key_channels**-0.5
        self.gamma = nn.Parameter(torch.zeros(1)) if gamma else None

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[2], x.shape[3]
        if height % self.ds != 0 or width % self.ds != 0:
            raise ValueError(
                f"BAM with ds={self.ds} needs H and W divisible by it, got {height}x{width}"
            )
        pooled = self.pool(x)
        b, c, h, w = pooled.shape
        query = self.query_conv(pooled).view(b, -1, h * w).permute(0, 2, 1)
        key = self.key_conv(pooled).view(b, -1, h * w)
        attention = torch.softmax(torch.bmm(query, key) * self.scale, dim=-1)
        value = self.value_conv(pooled).view(b, -1, h * w)
        out = torch.bmm(value, attention.permute(0, 2, 1)).view(b, c, h, w)
        out = F.interpolate(out, size=[height, width])
        gamma = self.gamma
        if gamma is not None:
            out = gamma * out
        return out + x


class BAMResNet(nn.Module):
    """The course ResNet with a BAM block after each residual stage (28x28 digits)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, gamma: bool = False) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels)
        # 28 -> conv5 24 -> pool 12 (BAM ds 4: 3x3 tokens) -> conv5 8 -> pool 4 (BAM ds 2: 2x2)
        self.stage1 = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            ResidualBlock(16),
            BAM(16, ds=4, gamma=gamma),
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(16, 32, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            ResidualBlock(32),
            BAM(32, ds=2, gamma=gamma),
        )
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.stage2(self.stage1(x)), 1))


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        ModelSpec(
            name="bam",
            capabilities=recorded("bam"),
            builder=BAM,
            task="block",
            input=InputSpec((64, 32, 32), value_range=(-1.0, 1.0), name="features"),
            outputs=(OutputSpec("attended", (64, 32, 32)),),
            summary="BAM self-attention block (ds=8): feature map in, same shape out",
            tags=("block", "attention"),
            source="Park et al. 2018, BAM: Bottleneck Attention Module, arXiv:1807.06514",
        )
    )
    registry.register(
        ModelSpec(
            name="bam_resnet",
            capabilities=recorded("bam_resnet"),
            builder=BAMResNet,
            task="classification",
            input=InputSpec.image((1, 28, 28), *MNIST),
            outputs=logits(10),
            num_classes=10,
            summary="Course ResNet with a BAM block after each stage, 28x28 digits",
            tags=("vision", "small", "mnist", "attention", "residual"),
            source="BAM (Park et al. 2018, arXiv:1807.06514) in a residual net (He et al. 2015)",
        )
    )
