"""The capability matrix: every registered model through ``zoo export`` to every portable format.

The outcome must equal what ``zoo list`` shows: the measured record for built-ins
(``make capabilities`` rewrites it), the declared claim for a third-party plugin. A format
that fails must fail with a reason, and never take the export of the other formats down.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import zoo
from tests.helpers import spec_params
from zoo._pluginmanager import get_plugins
from zoo.cli import _YES_NO, cli
from zoo.export import exporter, matrix
from zoo.registry import ModelSpec

PORTABLE = ("torchscript", "onnx", "pt2")


@pytest.mark.parametrize("spec", spec_params())
def test_export_outcomes_match_the_capability_record(spec: ModelSpec, tmp_path: Path) -> None:
    outcomes = matrix.measure(spec.name, PORTABLE, tmp_path)
    for fmt, outcome in outcomes.items():
        assert outcome["ok"] or outcome["why"], f"{spec.name} {fmt} failed without a reason"
    measured = matrix.capabilities_from(outcomes, measured="now")
    shown = spec.capabilities
    fields = ("scriptable", "onnx", "pt2", "dynamic_batch")
    assert {f: getattr(measured, f) for f in fields} == {f: getattr(shown, f) for f in fields}, (
        f"{spec.name}: zoo export gives {outcomes}, but zoo list shows {shown}; "
        "for a built-in model run `make capabilities` and commit zoo/plugins/capabilities.json"
    )


def test_every_builtin_model_is_in_the_record() -> None:
    record = json.loads(matrix.RECORD.read_text())
    assert record["measured_with"]["torch"]
    plugins = get_plugins()
    builtin = [n for n in zoo.list_models() if plugins.record(zoo.get_spec(n).plugin).builtin]
    assert len(builtin) >= 12
    for name in builtin:
        assert set(record["models"][name]) >= set(PORTABLE), name
        assert zoo.get_spec(name).capabilities.measured.startswith("zoo export (zoo 0.")


def test_capabilities_from_outcomes_says_why() -> None:
    outcomes = {
        "torchscript": {"ok": True, "method": "trace"},
        "onnx": {"ok": False, "why": "TorchExportError: unsupported op"},
        "pt2": {"ok": True},
    }
    caps = matrix.capabilities_from(outcomes, measured="test")
    assert (caps.scriptable, caps.onnx, caps.pt2, caps.aoti) == (True, False, True, None)
    assert caps.notes == (
        "torchscript: traced (the model does not script); onnx: TorchExportError: unsupported op"
    )


def test_a_format_that_cannot_export_says_why_and_the_rest_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = exporter._export_one

    def no_onnx(fmt: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fmt == "onnx":
            raise RuntimeError("aten::frobnicate has no ONNX symbolic")
        return real(fmt, *args, **kwargs)

    monkeypatch.setattr(exporter, "_export_one", no_onnx)
    result = CliRunner().invoke(cli, ["export", "lenet", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "zoo: onnx: failed: RuntimeError: aten::frobnicate has no ONNX symbolic" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert (tmp_path / "x" / "model.ts").exists() and (tmp_path / "x" / "model.pt2").exists()
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["formats"]["onnx"]["status"].startswith("failed: RuntimeError")


def test_zoo_list_shows_the_record() -> None:
    result = CliRunner().invoke(cli, ["list", "lenet"])
    assert result.exit_code == 0
    header, row = result.output.splitlines()[:2]
    columns = ("TS", "ONNX", "PT2", "AOTI", "DYN")
    cells = {c: row[header.index(f" {c} ") + 1 :].split()[0] for c in columns}
    caps = zoo.get_spec("lenet").capabilities
    assert cells == {
        "TS": _YES_NO[caps.scriptable],
        "ONNX": _YES_NO[caps.onnx],
        "PT2": _YES_NO[caps.pt2],
        "AOTI": _YES_NO[caps.aoti],
        "DYN": _YES_NO[caps.dynamic_batch],
    }


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
    assert outcomes["torchscript"] == {"ok": True, "method": "trace"}
    assert outcomes["onnx"]["ok"] and outcomes["pt2"]["ok"]
    manifest = json.loads((tmp_path / "traceonly" / "manifest.json").read_text())
    # The traced graph still takes batches of 1 and 3 (it was traced at 2).
    assert [c["input_shape"] for c in manifest["parity"]["torchscript"]["checks"]] == [
        [1, 4],
        [3, 4],
    ]
    caps = matrix.capabilities_from(outcomes, measured="test")
    assert caps.scriptable and "torchscript: traced" in caps.notes
