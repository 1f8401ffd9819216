"""Checkpoints that survive crashes and resume exactly.

Layout inside a run directory::

    checkpoints/epoch0003-step000189/
        model.safetensors   weights (and buffers): safetensors, no pickle
        state.pt            optimizer, scheduler, AMP scaler and RNG states (tensors and
                            plain values only: read with torch.load(weights_only=True))
        meta.json           epoch, step, best metric, model, config, dataset, versions
    last -> checkpoints/epoch0003-step000189   (symlink)
    best -> checkpoints/epoch0002-step000126   (symlink)

A checkpoint directory is written completely (each file fsynced) before ``last``/``best``
are switched to it with an atomic rename of a symlink, so a crash at any moment leaves the
previous checkpoint in place. Directories no tag points to are removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zoo._io import atomic_path, atomic_write_json, fsync_dir
from zoo.errors import ZooError

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "find_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 1
TAGS = ("last", "best")


class CheckpointError(ZooError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


@dataclass
class Checkpoint:
    path: Path
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    meta: dict[str, Any]

    def load_into(self, model: nn.Module, model_name: str | None = None) -> None:
        """Load the weights into ``model``, refusing other models and other shapes clearly."""
        expected = self.meta.get("model")
        if expected and model_name and expected != model_name:
            raise CheckpointError(
                f"checkpoint {self.path} holds model {expected!r}, not {model_name!r}"
            )
        own = model.state_dict()
        missing = sorted(set(own) - set(self.weights))
        extra = sorted(set(self.weights) - set(own))
        shapes = [
            f"{k}: checkpoint {tuple(self.weights[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k in self.weights and self.weights[k].shape != own[k].shape
        ]
        if missing or extra or shapes:
            details = "; ".join(
                part
                for part in (
                    f"missing {missing[:3]}" if missing else "",
                    f"unexpected {extra[:3]}" if extra else "",
                    f"shape mismatch {shapes[:3]}" if shapes else "",
                )
                if part
            )
            raise CheckpointError(
                f"checkpoint {self.path} (model {expected!r}, options "
                f"{self.meta.get('model_args', {})}) does not fit this model: {details}"
            )
        model.load_state_dict(self.weights)


def _dir_name(meta: dict[str, Any]) -> str:
    return f"epoch{int(meta['epoch']):04d}-step{int(meta['step']):07d}"


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    state: dict[str, Any],
    meta: dict[str, Any],
    tags: tuple[str, ...] = ("last",),
) -> Path:
    """Write one checkpoint and point ``tags`` (``last``, ``best``) at it atomically."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = _dir_name(meta)
    target = root / name
    suffix = 1
    while target.exists():  # a resumed run may save the same step again
        suffix += 1
        target = root / f"{name}-{suffix}"
    staging = root / f".{target.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(staging / "model.safetensors") as tmp:
        save_file(weights, str(tmp), metadata={"format": "zoo", "model": str(meta.get("model"))})
    with atomic_path(staging / "state.pt") as tmp:
        torch.save(state, tmp)
    atomic_write_json(staging / "meta.json", {"format_version": FORMAT_VERSION, **meta})
    os.replace(staging, target)
    fsync_dir(root)
    for tag in tags:
        _point(run_dir, tag, target)
    _prune(run_dir)
    return target


def _point(run_dir: Path, tag: str, target: Path) -> None:
    link = run_dir / tag
    tmp = run_dir / f".{tag}.link-tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, run_dir), tmp)
    os.replace(tmp, link)
    fsync_dir(run_dir)


def _prune(run_dir: Path) -> None:
    keep = {(run_dir / tag).resolve() for tag in TAGS if (run_dir / tag).is_symlink()}
    for entry in (run_dir / "checkpoints").iterdir():
        if entry.is_dir() and entry.resolve() not in keep and not entry.name.startswith("."):
            shutil.rmtree(entry, ignore_errors=True)


def find_checkpoint(path: str | Path, tag: str = "last") -> Path | None:
    """The checkpoint directory for ``path``: a run directory (its ``tag``) or a checkpoint."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    candidate = path / tag
    if (candidate / "meta.json").is_file():
        return candidate.resolve()
    return None


def load_checkpoint(
    path: str | Path, tag: str = "last", map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Read a checkpoint (a run directory or checkpoint directory); never unpickles objects."""
    found = find_checkpoint(path, tag)
    if found is None:
        raise CheckpointError(
            f"no checkpoint at {path}: expected a run directory with a '{tag}' checkpoint "
            "(written by `zoo train --out DIR`) or a checkpoint directory holding meta.json"
        )
    try:
        meta = json.loads((found / "meta.json").read_text(encoding="utf-8"))
        weights = load_file(str(found / "model.safetensors"), device="cpu")
        state = torch.load(found / "state.pt", map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read checkpoint {found}: {type(exc).__name__}: {exc}"
        ) from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {found} has format {meta.get('format_version')!r}; "
            f"this zoo reads format {FORMAT_VERSION}"
        )
    return Checkpoint(path=found, weights=weights, state=state, meta=meta)
