"""Preprocessing constants (and, with the export work, scriptable preprocessing modules).

Normalisations are per-channel ``(mean, std)`` applied to pixels scaled to [0, 1], the
values the notes use. Importing this module does not import torch.
"""

from __future__ import annotations

__all__ = ["CIFAR", "IMAGENET", "MNIST", "Normalization"]

#: ``(mean per channel, std per channel)``
Normalization = tuple[tuple[float, ...], tuple[float, ...]]

#: MNIST digits (notes 001/002): one channel.
MNIST: Normalization = ((0.1307,), (0.3081,))
#: ``Normalize(0.5, 0.5)`` of the CIFAR-10 tutorial (003): maps [0, 1] to [-1, 1].
CIFAR: Normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: torchvision's ImageNet statistics, for the pretrained backbones.
IMAGENET: Normalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
