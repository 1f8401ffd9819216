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
previous checkpoint in place. Directories no tag points to are removed afterwards, but only
while every tag points to a valid checkpoint. Free space is checked before writing; a disk
that fills up anyway leaves no partial checkpoint (:class:`zoo.errors.NoSpaceError`).

A checkpoint is untrusted input: ``meta.json`` is checked field by field (and its ``config``
by :func:`zoo.train.config.check_checkpoint_config`, where a run or an export uses it),
``state.pt`` is read with ``torch.load(weights_only=True)`` (tensors and
plain values; a pickle payload is refused, never run), and every problem is one line naming
the file. A run's ``last`` and ``best`` must point into its own ``checkpoints/`` (a real
directory), and a checkpoint's files must be regular files: a link out of the run is refused,
never followed.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zoo import _json as js
from zoo._io import (
    atomic_path,
    atomic_write_json,
    free_bytes,
    fsync_dir,
    is_no_space,
    no_space_message,
)
from zoo.errors import NoSpaceError, ZooError, one_line

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "find_checkpoint",
    "is_valid_checkpoint",
    "load_checkpoint",
    "newest_checkpoint",
    "plain_module",
    "save_checkpoint",
]

FORMAT_VERSION = 1
TAGS = ("last", "best")
#: The files of a checkpoint directory.
FILES = ("model.safetensors", "state.pt", "meta.json")
#: Room for meta.json, file system blocks and the zip container, beyond the tensors' bytes.
SPACE_MARGIN = 1 << 20
#: meta.json is a few KB (its history grows by a few hundred bytes an epoch).
MAX_META_BYTES = 16 << 20

#: Tests only: ``N:SIGNAL[,N:SIGNAL...]`` (``3:KILL``, ``2:INT,3:INT``) makes this process
#: send itself SIGNAL at the N-th commit point of save_checkpoint (counted over the process's
#: life), to prove that a crash or Ctrl-C at any step of a save loses nothing.
SIGNAL_ENV = "ZOO_TEST_SIGNAL_AT_COMMIT_POINT"
_commit_points = 0


def _commit_point() -> None:
    global _commit_points
    wanted = os.environ.get(SIGNAL_ENV)
    if not wanted:
        return
    _commit_points += 1
    for item in wanted.split(","):
        point, _, name = item.partition(":")
        if int(point) == _commit_points:
            os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


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
        model = plain_module(model)
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


def plain_module(model: nn.Module) -> nn.Module:
    """The module ``torch.compile(model)`` wraps (its ``state_dict`` keys carry an
    ``_orig_mod.`` prefix), else ``model``: checkpoints hold the plain model's names, whichever
    is passed. (The trainer compiles in place, which keeps the names.)"""
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else model


def _dir_name(meta: dict[str, Any]) -> str:
    return f"epoch{int(meta['epoch']):04d}-step{int(meta['step']):07d}"


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    state: dict[str, Any],
    meta: dict[str, Any],
    tags: tuple[str, ...] = ("last",),
) -> Path:
    """Write one checkpoint and point ``tags`` (``last``, ``best``) at it atomically.

    Raises :class:`NoSpaceError` (nothing written, the earlier checkpoints intact) when the
    disk cannot hold it: checked first, from the size of the tensors, and again on any write
    that fails for want of space."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    # Contiguous: a channels-last run's 4-D weights are saved in the default layout.
    state_dict = plain_module(model).state_dict()
    weights = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    needs = _tensor_bytes(weights) + _tensor_bytes(state) + SPACE_MARGIN
    if free_bytes(root) < needs:
        raise NoSpaceError(no_space_message(root, needs))
    name = _dir_name(meta)
    target = root / name
    suffix = 1
    while target.exists():  # a resumed run may save the same step again
        suffix += 1
        target = root / f"{name}-{suffix}"
    staging = root / f".{target.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        staging.mkdir()
        _commit_point()
        with atomic_path(staging / "model.safetensors") as tmp:
            save_file(
                weights, str(tmp), metadata={"format": "zoo", "model": str(meta.get("model"))}
            )
        _commit_point()
        # Serialised in memory, then written: a write that fails is an OSError, instead of
        # torch's archive writer failing in C++ (an enforce error, or an abort).
        buffer = io.BytesIO()
        torch.save(state, buffer)
        with atomic_path(staging / "state.pt") as tmp:
            tmp.write_bytes(buffer.getbuffer())
        _commit_point()
        atomic_write_json(staging / "meta.json", {"format_version": FORMAT_VERSION, **meta})
        _commit_point()
        os.replace(staging, target)
        _commit_point()
        fsync_dir(root)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if is_no_space(exc):
            raise NoSpaceError(no_space_message(root, needs)) from None
        raise
    # ``last`` is switched last: it is what --resume reads, so a crash before it repeats this
    # step, and ``best`` never lags behind a ``last`` that recorded a better epoch.
    for tag in sorted(tags, key=lambda tag: tag == "last"):
        _point(run_dir, tag, target)
    _prune(run_dir)
    return target


def _point(run_dir: Path, tag: str, target: Path) -> None:
    link = run_dir / tag
    tmp = run_dir / f".{tag}.link-tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, run_dir), tmp)
    _commit_point()
    os.replace(tmp, link)
    _commit_point()
    fsync_dir(run_dir)


def _prune(run_dir: Path) -> None:
    """Remove the checkpoints no tag points to, once every tag points to a valid one: while a
    tag is dangling or broken nothing is removed (what it pointed to cannot be known)."""
    tags = [run_dir / tag for tag in TAGS if (run_dir / tag).is_symlink()]
    if not all(is_valid_checkpoint(tag) for tag in tags):
        return
    root = run_dir / "checkpoints"
    if root.is_symlink():  # zoo made a directory: whatever a link leads to is not zoo's
        return
    keep = {tag.resolve() for tag in tags}
    for entry in root.iterdir():
        if entry.is_symlink():  # likewise: never removed, never followed
            continue
        if entry.is_dir() and entry.resolve() not in keep and not entry.name.startswith("."):
            shutil.rmtree(entry, ignore_errors=True)
    _commit_point()


def is_valid_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a complete checkpoint directory whose meta.json zoo can read."""
    try:
        if not all(_regular(path / f) for f in FILES):
            return False
        _check_meta(path, _read_meta(path))
    except (OSError, ValueError, CheckpointError):
        return False
    return True


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The valid checkpoint of ``run_dir`` with the most steps, whatever its tags say (none
    that is a symbolic link, nor any under a ``checkpoints`` that is one)."""
    root = Path(run_dir) / "checkpoints"
    if root.is_symlink() or not root.is_dir():
        return None
    found = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue
        if not is_valid_checkpoint(entry):
            continue
        meta = _read_meta(entry)
        found.append((meta["step"], meta["epoch"], entry.name, entry))
    return max(found)[-1].resolve() if found else None


def find_checkpoint(path: str | Path, tag: str = "last") -> Path | None:
    """The checkpoint directory for ``path``: a checkpoint, or a run directory's ``tag``,
    which must point into the run's own ``checkpoints/`` (CheckpointError, in one line, for a
    link out of the run: it is never followed). None where there is neither."""
    path = Path(path)
    if os.path.lexists(path / "meta.json"):
        return path
    candidate = path / tag
    if not os.path.lexists(candidate):
        return None
    root = path / "checkpoints"
    target = candidate.resolve()
    if root.is_symlink() or target.parent != root.resolve() or target.is_symlink():
        where = (
            f"{root} is a symbolic link"
            if root.is_symlink()
            else f"{candidate} points to {target}, outside the run's own checkpoints"
        )
        raise CheckpointError(
            f"{where}: zoo does not follow a run's links out of it (pass that checkpoint "
            "directory itself if you trust it)"
        )
    return target if os.path.lexists(target / "meta.json") else None


def _regular(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()


def _read_meta(path: Path) -> Any:
    """meta.json of checkpoint ``path``: a regular file (no link) of at most MAX_META_BYTES."""
    where = path / "meta.json"
    return json.loads(js.read_text(where, str(where), MAX_META_BYTES, follow=False))


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__ if value is not None else "null"
    )


def _field(path: Path, data: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    value = data.get(key)
    if (
        key not in data
        or not isinstance(value, kinds)
        or isinstance(value, bool) != (bool in kinds)
    ):
        found = "missing" if key not in data else f"{_kind(value)} {json.dumps(value)[:40]}"
        raise CheckpointError(
            f"checkpoint {path / 'meta.json'} is malformed: {key!r} must be {what}, got {found}"
            " (zoo writes this file; was it edited?)"
        )
    return value


def _check_meta(path: Path, meta: Any) -> None:
    """Refuse a meta.json that zoo did not write, one line naming the field."""
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"checkpoint {path / 'meta.json'} is malformed: expected an object, got {_kind(meta)}"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format_version')!r:.40}; "
            f"this zoo reads format {FORMAT_VERSION}"
        )
    _field(path, meta, "model", (str,), "a model name")
    for key in ("epoch", "step"):
        if _field(path, meta, key, (int,), "a count") < 0:
            raise CheckpointError(f"checkpoint {path / 'meta.json'}: {key!r} is negative")
    for key in ("config", "model_args", "progress"):
        _field(path, meta, key, (dict,), "an object")
    progress = meta["progress"]
    for key in ("epoch", "batch", "step", "bad_epochs"):
        if _field(path, progress, key, (int,), "a count (in 'progress')") < 0:
            raise CheckpointError(f"checkpoint {path / 'meta.json'}: progress {key!r} is negative")
    _field(path, progress, "history", (list,), "a list (in 'progress')")
    if progress.get("best") is not None:
        _field(path, progress, "best", (int, float), "a number (in 'progress')")


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
    current = found / "meta.json"
    try:
        for name in FILES:
            current = found / name
            if current.is_symlink():
                raise CheckpointError(
                    f"checkpoint file {current} is a symbolic link: a checkpoint holds regular "
                    "files only, and zoo does not follow one out of it"
                )
        current = found / "meta.json"
        meta = _read_meta(found)
        _check_meta(found, meta)
        current = found / "model.safetensors"
        weights = load_file(str(current), device="cpu")
        current = found / "state.pt"
        state = torch.load(current, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError:
        # torch's multi-line advice to pass weights_only=False: zoo never does.
        raise CheckpointError(
            f"checkpoint file {current} holds Python objects, not only tensors and plain "
            "values; zoo does not load such files (zoo never wrote it): use a checkpoint "
            "written by `zoo train`"
        ) from None
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint file {current}: {one_line(exc)}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("optimizer"), dict):
        raise CheckpointError(
            f"checkpoint file {found / 'state.pt'} is malformed: expected the optimizer and "
            "RNG states that `zoo train` writes"
        )
    return Checkpoint(path=found, weights=weights, state=state, meta=meta)
