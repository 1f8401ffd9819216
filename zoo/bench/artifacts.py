"""The artifacts ``zoo bench`` times: ``--artifacts`` checked against its manifest, or an
export of its own in zoo's cache, made once per (model, weights, zoo and torch version)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from zoo._pluginmanager import get_plugins
from zoo._version import __version__
from zoo.bench.settings import BenchSettings
from zoo.errors import UsageError, one_line
from zoo.export.exporter import check_weights, export_model
from zoo.export.manifest import (
    ArtifactError,
    Manifest,
    read_manifest,
    verify_export,
    verify_files,
)

__all__ = ["cache_dir", "export_dir", "formats_for", "variants_for", "vet_export"]


def formats_for(runtimes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The export formats these runtimes load (each runtime's ``format``) that can be written
    here, in order (``aoti-cuda`` compiles on a GPU only: without one its runtime's row says
    why it is skipped); the default formats' first when none needs one (eager and
    torch.compile read the weights beside it)."""
    plugins = get_plugins()
    formats = (plugins.runtimes.get(r).format for r in runtimes)
    here = (f for f in formats if f is not None and plugins.formats.get(f).unavailable() is None)
    return tuple(dict.fromkeys(here)) or (
        plugins.formats.defaults()[:1] or tuple(plugins.formats.names()[:1])
    )


def variants_for(formats: tuple[str, ...], precisions: tuple[str, ...]) -> tuple[str, ...]:
    """``formats`` and their registered variants in ``precisions`` (where they have one)."""
    registry = get_plugins().formats
    found = [
        variant.name
        for fmt in formats
        for precision in precisions
        if precision != "fp32" and (variant := registry.of_precision(fmt, precision)) is not None
    ]
    for precision in precisions:
        if precision != "fp32" and not any(registry.get(v).precision == precision for v in found):
            raise UsageError(
                f"--precision {precision}: none of the runtimes' formats "
                f"({', '.join(formats)}) has a variant in {precision} (`zoo formats`)"
            )
    return tuple(dict.fromkeys([*formats, *found]))


def cache_dir() -> Path:
    root = os.environ.get("ZOO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zoo"
    )
    return Path(root)


def vet_export(directory: Path, manifest: Manifest) -> None:
    """An export made elsewhere, before any of it runs: every file as its manifest says, the
    weights those of its model (eager and torch.compile rebuild the model from them), and
    every artifact clear of what its format refuses (``Format.check_artifact``: files it
    would read, operators it would run); ArtifactError naming the first problem. An artifact
    that does not even parse is left to its runtime, which fails on it in one line."""
    verify_export(directory, manifest)
    check_weights(directory, manifest)
    registry = get_plugins().formats
    for fmt, artifact in manifest.artifacts().items():
        if fmt not in registry:
            continue
        try:
            registry.get(fmt).check_artifact(directory)
        except ValueError as exc:
            raise ArtifactError(f"{directory / artifact}: {one_line(exc)}") from None
        except Exception:  # a file that does not parse: its runtime says so
            pass


def export_dir(model: str, settings: BenchSettings, formats: tuple[str, ...]) -> Path:
    """The export to time: ``--artifacts`` (checked against its manifest), else a cached
    export of fresh weights (seeded), else a new one."""
    if settings.artifacts is not None:
        base = settings.artifacts
        for directory in (base, base / model):
            # lexists: a manifest that is a link or a FIFO is refused by read_manifest, by name
            if os.path.lexists(directory / "manifest.json"):
                manifest = read_manifest(directory)
                if manifest.model != model:
                    continue
                vet_export(directory, manifest)  # here, not in the worker: its load is timed
                return directory
        raise UsageError(
            f"--artifacts {base}: no export of {model!r} there (expected {base}/manifest.json "
            f"or {base}/{model}/manifest.json, as `zoo export {model} --out DIR` writes)"
        )
    key = json.dumps(
        [
            model,
            settings.raw,
            str(settings.checkpoint),
            settings.seed,
            str(torch.__version__),
            __version__,
            settings.eval_dataset,
        ],
        sort_keys=True,
    )
    if settings.checkpoint is not None:
        key += str(os.stat(settings.checkpoint).st_mtime_ns)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    out = cache_dir() / "bench-exports" / f"{model}-{digest}"
    have: set[str] = set()
    if (out / "manifest.json").is_file():
        try:
            cached: Manifest = read_manifest(out)
        except ArtifactError:  # an older zoo's export, or a damaged one: export again
            pass
        else:
            if not verify_files(out, cached):
                have = set(cached.artifacts())
                if set(formats) <= set(cached.formats):
                    return out
    wanted = tuple(dict.fromkeys([*sorted(have), *formats]))
    export_model(
        model,
        out,
        formats=wanted,
        checkpoint=settings.checkpoint,
        raw=settings.raw,
        seed=None if settings.checkpoint is not None else settings.seed,
        overwrite=True,  # zoo's own cache: an export missing formats is made again
        eval_dataset=settings.eval_dataset,
    )
    return out
