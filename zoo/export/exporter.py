"""``zoo export``: build the bundle, write each format, gate it on parity, write the manifest.

Everything is written into a staging directory beside ``--out`` and moved into place at the
end, so an interrupted export never leaves a half-written directory that looks complete, and
an artifact that fails its parity check is removed rather than shipped.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo import __version__
from zoo._io import atomic_write_json, usual_mode
from zoo._pluginmanager import get_spec
from zoo.errors import UsageError
from zoo.export.bundle import make_bundle, run_eager
from zoo.export.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    ArtifactError,
    read_manifest,
    sha256,
    verify_files,
)
from zoo.export.validate import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    RuntimeCrash,
    compare,
    compare_isolated,
    load_fixture,
    load_runtime,
    parity_inputs,
    save_fixture,
)

__all__ = [
    "DEFAULT_FORMATS",
    "FILES",
    "FORMATS",
    "ExportReport",
    "check_export",
    "export_model",
    "opset_range",
]

FORMATS = ("torchscript", "onnx", "pt2", "aoti")
#: What ``zoo export`` writes unless told otherwise (AOTInductor compiles for minutes).
DEFAULT_FORMATS = ("torchscript", "onnx", "pt2")
#: The artifact file of each format.
FILES = {
    "torchscript": "model.ts",
    "onnx": "model.onnx",
    "pt2": "model.pt2",
    "aoti": "model.aoti.pt2",
}
PARITY_FILE = "parity.safetensors"
#: Above this many bytes of parameters, ONNX weights go to an external ``.data`` file.
EXTERNAL_DATA_BYTES = 100 * 2**20


def opset_range() -> tuple[int, int]:
    """Opsets the torch.export-based ONNX exporter can write here."""
    import onnx

    return 18, onnx.defs.onnx_opset_version()


@dataclass
class ExportReport:
    out: Path
    manifest: dict[str, Any]
    #: format -> "ok" / "failed: why" / "parity failed"
    status: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s == "ok" for s in self.status.values())


def _check_writable(out: Path) -> None:
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".zoo-write-test"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to {parent}: {exc.strerror or exc}") from exc
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not a zoo export directory; choose another --out")


def export_model(
    name: str,
    out: str | Path,
    *,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    checkpoint: str | Path | None = None,
    model_args: dict[str, Any] | None = None,
    raw: bool = False,
    postprocess: str = "none",
    top_k: int = 5,
    opset: int = 20,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ExportReport:
    """Export model ``name`` (fresh weights, or a run directory's best checkpoint)."""
    out = Path(out)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(
            f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}"
        )
    low, high = opset_range()
    if "onnx" in formats and not low <= opset <= high:
        raise UsageError(f"opset {opset} is not supported: choose {low} to {high}")
    spec = get_spec(name)
    _check_writable(out)

    args = dict(model_args or {})
    source = "fresh weights"
    ckpt = None
    if checkpoint is not None:
        from zoo.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint, tag="best")
        if ckpt.meta.get("model") != name:
            raise UsageError(
                f"checkpoint {ckpt.path} holds model {ckpt.meta.get('model')!r}, not {name!r}"
            )
        args = {**ckpt.meta.get("model_args", {}), **args}
        source = str(ckpt.path)
    model = spec.build(**args).eval()
    if ckpt is not None:
        ckpt.load_into(model, name)
    bundle, input_spec, outputs = make_bundle(
        spec, model, raw=raw, postprocess=postprocess, top_k=top_k
    )
    output_names = [o.name for o in outputs]
    example = input_spec.example(2)  # batch 2: a batch of 1 gets specialised (pitfalls)
    inputs = parity_inputs(input_spec)
    expected = [[t.numpy() for t in run_eager(bundle, x)] for x in inputs]

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.resolve().parent))
    staging.chmod(usual_mode(0o777))  # mkdtemp makes 0700; the export is an ordinary folder
    report = ExportReport(out=out, manifest={})
    parity: dict[str, Any] = {}
    try:
        save_fixture(staging / PARITY_FILE, inputs, expected, output_names)
        for fmt in formats:
            path = staging / FILES[fmt]
            try:
                details = _export_one(fmt, bundle, example, input_spec, output_names, path, opset)
            except Exception as exc:
                report.status[fmt] = f"failed: {type(exc).__name__}: {exc}"
            else:
                try:
                    result = _gate(fmt, path, inputs, expected, output_names, atol, rtol)
                except RuntimeCrash as exc:
                    report.status[fmt] = f"failed: {exc}"
                else:
                    parity[fmt] = {**result, **details}
                    report.status[fmt] = "ok" if result["passed"] else "parity failed"
            if report.status[fmt] != "ok":
                _remove(staging, fmt)  # never ship an artifact that failed or differs from eager
        manifest = _manifest(
            spec.name,
            source,
            args,
            raw,
            postprocess,
            opset,
            input_spec,
            outputs,
            bundle,
            staging,
            parity,
            report.status,
        )
        atomic_write_json(staging / MANIFEST, manifest)
        report.manifest = manifest
        _move_into_place(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return report


def _export_one(
    fmt: str,
    bundle: torch.nn.Module,
    example: torch.Tensor,
    input_spec: Any,
    output_names: list[str],
    path: Path,
    opset: int,
) -> dict[str, Any]:
    if fmt == "torchscript":
        from zoo.export.torchscript import export_torchscript

        return {"method": export_torchscript(bundle, example, path)}
    if fmt == "onnx":
        import onnx

        from zoo.export.onnx import export_onnx

        size = sum(p.numel() * p.element_size() for p in bundle.parameters())
        external = size > EXTERNAL_DATA_BYTES
        export_onnx(
            bundle,
            example,
            input_spec,
            path,
            output_names=output_names,
            opset=opset,
            external_data=external,
        )
        onnx.checker.check_model(str(path), full_check=True)
        return {"opset": opset, "external_data": external}
    from zoo.export import pt2

    program = pt2.export_program(bundle, example, input_spec)
    if fmt == "aoti":
        pt2.package_aoti(program, path)
        return {}
    pt2.save(program, path)
    return {}


def _gate(
    fmt: str,
    path: Path,
    inputs: list[torch.Tensor],
    expected: list[list[np.ndarray]],
    names: list[str],
    atol: float,
    rtol: float,
) -> dict[str, Any]:
    """Parity of one artifact in its runtime. A TorchScript module is checked twice: as
    loaded, and after ``optimize_for_inference`` (how zoo's runtime runs it); both must pass.
    An AOTInductor package is native code generated for this export: it runs in a child
    process, so a crash in it fails the format instead of killing zoo."""
    if fmt == "aoti":
        return compare_isolated(fmt, path, path.parent / PARITY_FILE, names, atol, rtol)
    result = compare(load_runtime(fmt, path), inputs, expected, names, atol, rtol)
    if fmt == "torchscript":
        optimized = compare(
            load_runtime(fmt, path, optimize=True), inputs, expected, names, atol, rtol
        )
        result["optimized"] = {"passed": optimized["passed"], "checks": optimized["checks"]}
        result["passed"] = result["passed"] and optimized["passed"]
    return result


def _remove(staging: Path, fmt: str) -> None:
    for file in staging.glob(FILES[fmt] + "*"):
        file.unlink()


def _manifest(
    name: str,
    source: str,
    args: dict[str, Any],
    raw: bool,
    postprocess: str,
    opset: int,
    input_spec: Any,
    outputs: Any,
    bundle: Any,
    staging: Path,
    parity: dict[str, Any],
    status: dict[str, str],
) -> dict[str, Any]:
    import onnx
    import onnxruntime

    preprocessing: list[dict[str, Any]] = []
    if not isinstance(bundle.preprocess, torch.nn.Identity):
        from zoo.transforms import describe_transform

        preprocessing = describe_transform(bundle.preprocess)
    files = {
        p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in sorted(staging.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    dynamic = {str(k): v for k, v in input_spec.dynamic_axes.items()}
    return {
        "format_version": FORMAT_VERSION,
        "model": name,
        "weights": source,
        "model_args": args,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "zoo": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "raw": raw,
        "postprocess": (
            {"kind": postprocess, "k": bundle.k} if hasattr(bundle, "k") else postprocess
        ),
        "preprocessing": preprocessing,
        "inputs": [
            {
                "name": input_spec.name,
                "dtype": input_spec.dtype,
                "shape": ["batch", *input_spec.shape],
                "dynamic_axes": dynamic,
                "value_range": list(input_spec.value_range),
            }
        ],
        "outputs": [
            {"name": o.name, "dtype": o.dtype, "shape": ["batch", *o.shape]} for o in outputs
        ],
        "opset": opset,
        "formats": {
            fmt: {"status": s, "file": FILES[fmt] if s == "ok" else None}
            for fmt, s in status.items()
        },
        "files": files,
        "parity": parity,
    }


def _move_into_place(staging: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    if old.exists():
        shutil.rmtree(old)


def check_export(directory: str | Path) -> dict[str, Any]:
    """Re-verify an export: file hashes, then parity of each artifact on the saved inputs."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    problems = verify_files(directory, manifest)
    if problems:
        raise ArtifactError(f"{directory}: " + "; ".join(problems))
    names = [o["name"] for o in manifest["outputs"]]
    inputs, expected = load_fixture(directory / PARITY_FILE, names)
    results = {}
    for fmt, entry in manifest["formats"].items():
        if entry["status"] != "ok":
            continue
        tolerance = manifest["parity"][fmt]
        results[fmt] = _gate(
            fmt,
            directory / entry["file"],
            inputs,
            expected,
            names,
            tolerance["atol"],
            tolerance["rtol"],
        )
    return results
