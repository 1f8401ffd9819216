"""The capability matrix: export models to every format through ``zoo export`` and record
what works.

``python -m zoo.export.matrix --write`` (``make capabilities``) exports every built-in model
with fresh weights to every registered format, parity gate included, and writes the outcomes
to the capability record (:mod:`zoo.capabilities`); the built-in specs read their
``Capabilities`` from there, so ``zoo list`` and ``zoo info`` show measured facts.
``tests/export/test_matrix.py`` repeats the portable formats for every registered model and
fails when a fresh outcome and a measured one disagree.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from zoo._pluginmanager import PluginRecord, get_plugins
from zoo._version import __version__
from zoo.capabilities import CapabilityOutcome, read_record, write_record
from zoo.export.exporter import ExportReport, export_model

__all__ = ["main", "measure", "outcomes_of"]


def outcomes_of(report: ExportReport) -> dict[str, CapabilityOutcome]:
    """Format -> outcome of an export: ok (and how, where the format says), or why not."""
    outcomes = {}
    for fmt, record in report.manifest.formats.items():
        if record.ok:
            outcomes[fmt] = CapabilityOutcome.ok(method=str(record.details.get("method", "")))
        else:
            outcomes[fmt] = CapabilityOutcome.failed(record.reason)
    return outcomes


def measure(name: str, formats: tuple[str, ...], workdir: Path) -> dict[str, CapabilityOutcome]:
    """Export ``name`` (fresh weights, seed 0) to ``formats`` under ``workdir``; its outcomes."""
    report = export_model(name, workdir / name, formats=formats, seed=0)
    return outcomes_of(report)


def main(argv: list[str] | None = None) -> int:
    plugins = get_plugins()
    parser = argparse.ArgumentParser(prog="python -m zoo.export.matrix", description=__doc__)
    parser.add_argument("models", nargs="*", default=["*"], help="names or patterns")
    # What can be measured here: aoti-cuda, say, needs a GPU, and stays as recorded.
    here = [f for f in plugins.formats.full_precision() if f.unavailable() is None]
    for fmt in plugins.formats.full_precision():
        if fmt not in here:
            print(f"note: {fmt.name} is not measured here: {fmt.unavailable()}", flush=True)
    parser.add_argument("--formats", default=",".join(f.name for f in here))
    parser.add_argument("--write", action="store_true", help="update the capability record")
    args = parser.parse_args(argv)
    formats = tuple(f for f in args.formats.split(",") if f)
    builtin = [s.name for s in plugins.models if _is_builtin(plugins.record(s.plugin))]
    names = [n for n in builtin if any(fnmatch.fnmatch(n, p) for p in args.models)]
    record = read_record()
    versions = {"zoo": __version__, "torch": torch.__version__}
    for fmt in formats:
        versions.update(plugins.formats.get(fmt).versions())
    record["measured_with"] = versions
    with tempfile.TemporaryDirectory(prefix="zoo-matrix-") as tmp:
        for name in names:
            outcomes = measure(name, formats, Path(tmp))
            record["models"].setdefault(name, {}).update(
                {fmt: o.to_dict() for fmt, o in outcomes.items()}
            )
            cells = ", ".join(
                f"{fmt} {o.status}" + (f": {o.reason}" if o.reason else "")
                for fmt, o in outcomes.items()
            )
            print(f"{name}: {cells}", flush=True)
            shutil.rmtree(Path(tmp) / name)  # VGG16's export takes gigabytes: free as we go
            if args.write:
                write_record(record)
    return 0


def _is_builtin(record: PluginRecord | None) -> bool:
    return record is not None and record.builtin


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
