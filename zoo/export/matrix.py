"""The capability matrix: export models to every format through ``zoo export`` and record
what works.

``python -m zoo.export.matrix --write`` (``make capabilities``) exports every built-in model
with fresh weights to every format, parity gate included, and writes the outcomes to
``zoo/plugins/capabilities.json``; the built-in specs read their ``Capabilities`` from there,
so ``zoo list`` and ``zoo info`` show measured facts. ``tests/export/test_matrix.py`` repeats
the portable formats for every registered model and fails when the outcome and the record
(or a third-party plugin's claim) disagree.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from zoo.registry import Capabilities

__all__ = ["RECORD", "capabilities_from", "main", "measure", "outcomes_of"]

RECORD = Path(__file__).resolve().parent.parent / "plugins" / "capabilities.json"


def outcomes_of(report: Any) -> dict[str, dict[str, Any]]:
    """``{format: {"ok": True, "method": ...} | {"ok": False, "why": ...}}`` of an export."""
    outcomes: dict[str, dict[str, Any]] = {}
    for fmt, status in report.status.items():
        if status == "ok":
            outcome: dict[str, Any] = {"ok": True}
            method = report.manifest["parity"][fmt].get("method")
            if method:
                outcome["method"] = method
        else:
            outcome = {"ok": False, "why": _why(status, report.manifest["parity"].get(fmt))}
        outcomes[fmt] = outcome
    return outcomes


def _why(status: str, parity: dict[str, Any] | None) -> str:
    if status != "parity failed" or not parity:
        return status.removeprefix("failed: ")
    worst = []
    for check in parity["checks"]:
        if "error" in check:
            return f"parity failed at input {check['input_shape']}: {check['error']}"
        for name, diff in check["outputs"].items():
            if not diff["ok"]:
                worst.append((diff.get("max_abs", float("inf")), name, check["input_shape"]))
    if not worst:
        return "parity failed"
    diff, name, shape = max(worst)
    return f"parity failed: {name} differs by up to {diff:.2e} at input {shape}"


def capabilities_from(outcomes: dict[str, dict[str, Any]], measured: str) -> Capabilities:
    """The ``Capabilities`` a set of outcomes proves; unmeasured formats count as missing
    (``aoti``: unknown)."""

    def works(fmt: str) -> bool:
        return bool(outcomes.get(fmt, {}).get("ok"))

    notes = []
    if outcomes.get("torchscript", {}).get("method") == "trace":
        notes.append("torchscript: traced (the model does not script)")
    notes += [f"{fmt}: {o['why']}" for fmt, o in outcomes.items() if not o["ok"]]
    return Capabilities(
        scriptable=works("torchscript"),
        onnx=works("onnx"),
        pt2=works("pt2"),
        aoti=works("aoti") if "aoti" in outcomes else None,
        # The parity gate runs batch sizes 1 and 3 on a graph exported at batch 2.
        dynamic_batch=any(o["ok"] for o in outcomes.values()),
        notes="; ".join(notes),
        measured=measured,
    )


def measure(name: str, formats: tuple[str, ...], workdir: Path) -> dict[str, dict[str, Any]]:
    """Export ``name`` (fresh weights, seed 0) to ``formats`` under ``workdir``; its outcomes."""
    import torch

    from zoo.export.exporter import export_model

    torch.manual_seed(0)
    report = export_model(name, workdir / name, formats=formats)
    return outcomes_of(report)


def main(argv: list[str] | None = None) -> int:
    import zoo
    from zoo._io import atomic_write_json
    from zoo._pluginmanager import get_plugins
    from zoo.export.exporter import FORMATS
    from zoo.plugins._common import measured_with, read_record

    parser = argparse.ArgumentParser(prog="python -m zoo.export.matrix", description=__doc__)
    parser.add_argument("models", nargs="*", default=["*"], help="names or patterns")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--write", action="store_true", help=f"update {RECORD}")
    args = parser.parse_args(argv)
    formats = tuple(f for f in args.formats.split(",") if f)
    plugins = get_plugins()
    builtin = [n for n in zoo.list_models() if _is_builtin(plugins, zoo.get_spec(n).plugin)]
    names = [n for n in builtin if any(fnmatch.fnmatch(n, p) for p in args.models)]
    record = read_record()
    record["measured_with"] = measured_with()
    with tempfile.TemporaryDirectory(prefix="zoo-matrix-") as tmp:
        for name in names:
            outcomes = measure(name, formats, Path(tmp))
            record["models"].setdefault(name, {}).update(outcomes)
            cells = ", ".join(
                f"{fmt} {'ok' if o['ok'] else 'FAILED: ' + o['why']}" for fmt, o in outcomes.items()
            )
            print(f"{name}: {cells}", flush=True)
            shutil.rmtree(Path(tmp) / name)  # VGG16's export takes gigabytes: free as we go
            if args.write:
                atomic_write_json(RECORD, record)
    return 0


def _is_builtin(plugins: Any, plugin: str) -> bool:
    record = plugins.record(plugin)
    return record is not None and record.builtin


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
