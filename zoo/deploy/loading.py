"""An export opened for serving: vetted, its runtime chosen, its artifact loaded.

``zoo predict`` and ``zoo serve`` (each replica) open an export the same way: the manifest
read, everything the export holds checked as ``zoo bench --artifacts`` checks an export made
elsewhere (:func:`zoo.bench.artifacts.vet_export`), then one of zoo's runtimes loads the
artifact, in fp32 or one of its format's reduced-precision variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo._pluginmanager import get_plugins
from zoo.bench.artifacts import vet_export
from zoo.bench.worker import source_of
from zoo.errors import UsageError
from zoo.export.manifest import Manifest, read_manifest
from zoo.runtimes import Runtime, Session, Source

__all__ = ["DEFAULT_RUNTIMES", "OpenExport", "choose_runtime", "open_export"]

#: Tried in this order when no runtime is named: the first whose artifact the export holds
#: and that runs here.
DEFAULT_RUNTIMES = ("onnxruntime", "torchscript", "pt2", "eager")


@dataclass
class OpenExport:
    """An export loaded in one runtime."""

    directory: Path
    manifest: Manifest
    runtime: Runtime
    session: Session
    #: The reduced-precision format whose artifact runs (``onnx-int8``), or None for fp32.
    variant: str | None = None

    @property
    def precision(self) -> str:
        if self.variant is None:
            return "fp32"
        return get_plugins().formats.get(self.variant).precision

    def close(self) -> None:
        self.session.close()


def choose_runtime(name: str | None, source: Source, device: str, directory: Path) -> Runtime:
    """The runtime ``name`` (UsageError saying why it cannot run ``source`` here), or the first
    of :data:`DEFAULT_RUNTIMES` and then every other registered runtime that can."""
    registry = get_plugins().runtimes
    if name is not None:
        runtime = registry.get(name)
        why = runtime.unavailable(source, device)
        if why is not None:
            raise UsageError(f"--runtime {name}: {why}")
        return runtime
    for candidate in dict.fromkeys((*DEFAULT_RUNTIMES, *registry.names())):
        if candidate in registry:
            runtime = registry.get(candidate)
            if runtime.unavailable(source, device) is None:
                return runtime
    raise UsageError(f"{directory}: no runtime here can run this export")


def _variant(manifest: Manifest, runtime: Runtime, precision: str) -> str:
    """The export's variant of ``runtime``'s format in ``precision`` (UsageError if none)."""
    registry = get_plugins().formats
    if runtime.format is None:
        raise UsageError(
            f"--precision {precision}: the {runtime.name} runtime runs the PyTorch module, "
            "not an artifact; choose a runtime of an exported format (`zoo runtimes`)"
        )
    variant = registry.of_precision(runtime.format, precision)
    record = manifest.formats.get(variant.name) if variant is not None else None
    if variant is None or record is None or record.artifact is None:
        held = [
            name
            for name, rec in manifest.formats.items()
            if rec.artifact is not None
            and name in registry
            and registry.get(name).variant_of == runtime.format
        ]
        raise UsageError(
            f"--precision {precision}: the export has no {precision} variant of "
            f"{runtime.format}"
            + (f" (it has {', '.join(held)})" if held else "")
            + f": export it with --format {runtime.format} --precision {precision}"
        )
    return variant.name


def open_export(
    directory: Path,
    runtime: str | None = None,
    *,
    device: str = "cpu",
    threads: int = 1,
    precision: str = "fp32",
    manifest: Manifest | None = None,
    serving: bool = False,
) -> OpenExport:
    """Vet the export in ``directory`` and load its artifact (of ``precision``) in ``runtime``
    (or the first that runs it here); ArtifactError or UsageError in one line. ``serving``:
    load it as a server's replica runs it (:meth:`zoo.runtimes.Runtime.serving`)."""
    manifest = manifest if manifest is not None else read_manifest(directory)
    vet_export(directory, manifest)
    source = source_of(directory, manifest)
    chosen = choose_runtime(runtime, source, device, directory)
    variant = None
    if precision != "fp32":
        variant = _variant(manifest, chosen, precision)
        source = source_of(directory, manifest, variant)
    loader = chosen.serving() if serving else chosen
    session = loader.load(source, device, threads)
    return OpenExport(directory, manifest, chosen, session, variant)
