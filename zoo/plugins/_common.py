"""Helpers shared by the built-in model plugins: output specs, option checks, pretrained
weights."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from zoo.errors import InvalidArgumentsError, WeightsError, one_line
from zoo.registry import OutputSpec

__all__ = [
    "check_positive",
    "load_state_dict_file",
    "load_torchvision_weights",
    "logits",
]


def logits(num_classes: int) -> tuple[OutputSpec, ...]:
    """The output spec of a classifier: one ``logits`` tensor of ``[B, num_classes]``."""
    return (OutputSpec("logits", (num_classes,)),)


def check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidArgumentsError(f"{key} must be a positive integer, got {value!r}")


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file or a torch file, never unpickling objects."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"could not read weights from {path}: {one_line(exc)}. zoo reads "
            "safetensors files or torch files holding only tensors (weights_only=True)"
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of name -> tensor)")
    return state


def load_torchvision_weights(model: nn.Module, weights: str | os.PathLike[str], enum: Any) -> None:
    """Load ``weights`` into a torchvision ``model`` with its original 1000-class head.

    ``weights`` is a local file (safetensors or torch state dict) or the name of a member of
    the torchvision weights ``enum`` (``"DEFAULT"``, ``"IMAGENET1K_V1"``...), downloaded through
    torch.hub, which looks in its cache first.
    """
    if Path(weights).is_file():
        state = load_state_dict_file(weights)
        source = str(weights)
    else:
        name = str(weights)
        try:
            member = enum[name]
        except KeyError:
            valid = ", ".join(enum.__members__)
            raise WeightsError(
                f"weights {name!r} is neither an existing file nor one of {valid}"
            ) from None
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        try:
            state = member.get_state_dict(progress=False, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            filename = member.url.rsplit("/", 1)[-1]
            raise WeightsError(
                f"could not download {enum.__name__}.{member.name} from {member.url} "
                f"({one_line(exc)}). Offline, put {filename} in {hub_dir} "
                "or pass weights=PATH to a local state-dict file"
            ) from exc
        source = f"{enum.__name__}.{member.name}"
    hint = "pass the backbone's original 1000-class ImageNet state dict"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when strict=False
        raise WeightsError(f"weights from {source} do not fit: {exc}; {hint}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"weights from {source} do not fit {type(model).__name__}: "
            f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]}); {hint}"
        )
