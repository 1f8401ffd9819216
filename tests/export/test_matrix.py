"""The capability matrix: every registered model through ``zoo export`` to every portable format.

A measured outcome must equal what ``zoo list`` shows: the record for built-ins (``make
capabilities`` rewrites it); a plugin's model is not measured until its author measures it. A
format that fails must fail with a reason, and never take the export of the other formats down.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import zoo
from tests.helpers import spec_params
from zoo._pluginmanager import get_plugins
from zoo.capabilities import RECORD, CapabilityOutcome
from zoo.cli import cli
from zoo.cli.listing import _YES_NO
from zoo.export import matrix
from zoo.formats import ExportRequest, Format
from zoo.plugins.onnx import OnnxFormat
from zoo.registry import ModelSpec

PORTABLE = ("torchscript", "onnx", "pt2")


@pytest.mark.parametrize("spec", spec_params())
def test_export_outcomes_match_the_capability_record(spec: ModelSpec, tmp_path: Path) -> None:
    outcomes = matrix.measure(spec.name, PORTABLE, tmp_path)
    for fmt, outcome in outcomes.items():
        assert outcome.works or outcome.reason, f"{spec.name} {fmt} failed without a reason"
    shown = spec.capabilities
    claimed = {f: shown.works(f) for f in PORTABLE if shown.works(f) is not None}
    assert {f: outcomes[f].works for f in claimed} == claimed, (
        f"{spec.name}: zoo export gives {outcomes}, but zoo list shows {shown}; "
        "for a built-in model run `make capabilities` and commit zoo/capabilities.json"
    )
    if shown.dynamic_batch is not None:  # the gate ran batches 1 and 3 on a batch-2 export
        assert any(o.works for o in outcomes.values()) == shown.dynamic_batch


def test_every_builtin_model_is_in_the_record() -> None:
    record = json.loads(RECORD.read_text())
    assert record["measured_with"]["torch"]
    plugins = get_plugins()
    builtin = [n for n in zoo.list_models() if plugins.record(zoo.get_spec(n).plugin).builtin]
    assert len(builtin) >= 12
    for name in builtin:
        assert set(record["models"][name]) >= set(PORTABLE), name
        assert zoo.get_spec(name).capabilities.measured.startswith("zoo export (zoo 0.")


def test_capabilities_say_what_failed_and_why() -> None:
    caps = zoo.Capabilities(
        formats={
            "torchscript": CapabilityOutcome.ok("trace"),
            "onnx": CapabilityOutcome.failed("TorchExportError: unsupported op"),
        },
        dynamic_batch=True,
        measured="test",
    )
    assert [caps.works(f) for f in ("torchscript", "onnx", "pt2")] == [True, False, None]
    assert caps.notes == "onnx: TorchExportError: unsupported op"
    assert caps.to_dict()["formats"]["torchscript"] == {"status": "ok", "method": "trace"}
    with pytest.raises(zoo.InvalidSpecError, match="is not one of"):
        CapabilityOutcome("maybe")


def test_a_format_that_cannot_export_says_why_and_the_rest_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_onnx(self: Format, request: ExportRequest) -> dict[str, object]:
        raise RuntimeError("aten::frobnicate has no ONNX symbolic")

    monkeypatch.setattr(OnnxFormat, "export", no_onnx)
    result = CliRunner().invoke(cli, ["export", "lenet", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "zoo: onnx: failed: RuntimeError: aten::frobnicate has no ONNX symbolic" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert (tmp_path / "x" / "model.ts").exists() and (tmp_path / "x" / "model.pt2").exists()
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["formats"]["onnx"]["status"] == "failed"
    assert manifest["formats"]["onnx"]["reason"].startswith("RuntimeError: aten::frobnicate")


def test_a_format_may_write_only_the_files_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = OnnxFormat.export

    def litters(self: Format, request: ExportRequest) -> dict[str, object]:
        (request.directory / "stray.bin").write_bytes(b"x")
        return real(self, request)

    monkeypatch.setattr(OnnxFormat, "export", litters)
    report = matrix.export_model("lenet", tmp_path / "x", formats=("onnx", "pt2"))
    assert report.manifest.formats["onnx"].reason == (
        "ArtifactError: the format wrote files it does not declare: ['stray.bin']"
    )
    assert (
        not (tmp_path / "x" / "stray.bin").exists() and not (tmp_path / "x" / "model.onnx").exists()
    )
    assert report.manifest.formats["pt2"].ok


def test_zoo_list_shows_the_record_in_one_column_per_registered_fp32_format() -> None:
    result = CliRunner().invoke(cli, ["list", "lenet"])
    assert result.exit_code == 0
    header, row = result.output.splitlines()[:2]
    formats = [f for f in get_plugins().formats if f.precision == "fp32"]
    assert "ONNX-INT8" not in header  # a variant needs trained weights and data: no column
    columns = [f.column for f in formats]
    assert columns[:5] == ["ONNX", "PT2", "AOTI", "AOTI-CUDA", "TS"]  # the built-ins, in order
    cells = {c: row[header.index(f" {c} ") + 1 :].split()[0] for c in [*columns, "DYN"]}
    caps = zoo.get_spec("lenet").capabilities
    assert cells == {
        **{f.column: _YES_NO[caps.works(f.name)] for f in formats},
        "DYN": _YES_NO[caps.dynamic_batch],
    }
    # Every format works for LeNet, but aoti-cuda's record needs a GPU: not measured here.
    assert {c: v for c, v in cells.items() if v != "y"} == {"AOTI-CUDA": "?"}


def test_a_plugin_model_is_not_measured_until_measured(fresh_plugins) -> None:
    from tests.helpers import tiny_spec

    plugins = get_plugins()

    class Unmeasured:
        @zoo.hookimpl
        def zoo_register_models(self, registry):  # type: ignore[no-untyped-def]
            registry.register(tiny_spec("unmeasured"))

    plugins.add_plugin(Unmeasured(), name="unmeasured")
    result = CliRunner().invoke(cli, ["list", "unmeasured"])
    header, row = result.output.splitlines()[:2]
    columns = [f.column for f in plugins.formats if f.precision == "fp32"] + ["DYN"]
    cells = [row[header.index(f" {c} ") + 1 :].split()[0] for c in columns]
    assert cells == ["?"] * len(columns)
    info = CliRunner().invoke(cli, ["info", "unmeasured"])
    assert "onnx not measured" in info.output and "(not measured)" in info.output


def test_a_plugin_model_that_does_not_script_is_traced(
    make_dist, on_path, fresh_plugins, tmp_path: Path
) -> None:
    site = make_dist(
        "zoo-test-traceonly",
        "1.0",
        {
            "zoo_test_traceonly": """
                import zoo
                from torch import nn

                class TwoHeads(nn.Module):
                    def __init__(self):
                        super().__init__()
                        self.heads = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 3)])

                    def forward(self, x):
                        # A generator expression: TorchScript cannot script this.
                        return sum(head(x) for head in self.heads)

                @zoo.hookimpl
                def zoo_register_models(registry):
                    registry.register(zoo.ModelSpec(
                        name="traceonly", builder=TwoHeads, task="block",
                        input=zoo.InputSpec((4,)), outputs=(zoo.OutputSpec("out", (3,)),),
                        summary="scripting fails, tracing works"))
            """
        },
        {"traceonly": "zoo_test_traceonly"},
    )
    on_path(site)
    outcomes = matrix.measure("traceonly", PORTABLE, tmp_path)
    assert outcomes["torchscript"] == CapabilityOutcome.ok("trace")
    assert outcomes["onnx"].works and outcomes["pt2"].works
    manifest = json.loads((tmp_path / "traceonly" / "manifest.json").read_text())
    # The traced graph still takes batches of 1 and 3 (it was traced at 2).
    checks = manifest["formats"]["torchscript"]["parity"]["checks"]
    assert [c["input_shape"] for c in checks] == [[1, 4], [3, 4]]
