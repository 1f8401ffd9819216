"""A real deploy target zoo does not ship, added by installing a plugin package:
``examples/zoo-openvino`` (an export format and a bench runtime), installed for real and driven
through the CLI, with no change to zoo."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import openvino
import pytest
import torch

from tests.helpers import install_example, run_zoo
from zoo.bench.results import load_run

#: fp32: on CPUs with AMX, OpenVINO may pick bf16 unless told.
FP32 = {"INFERENCE_PRECISION_HINT": "f32"}


def _bench_openvino(out: Path, precision: str, site: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """The rows of a short ``zoo bench --runtime openvino --precision PRECISION`` of ``out``."""
    bench = run_zoo(
        "bench", "lenet", "--artifacts", str(out), "--runtime", "openvino",
        "--precision", precision, "--batch", "2", "--min-time", "0.05", "--min-iters", "5",
        "--warmup", "1", "--rounds", "1", "--max-rounds", "1", "--json", str(tmp_path / "b.json"),
        path=site,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    rows: list[dict[str, Any]] = json.loads((tmp_path / "b.json").read_text())["results"]
    return rows


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = install_example("zoo-openvino", tmp_path_factory.mktemp("site"))
    assert list(target.glob("zoo_openvino-0.1.0.dist-info"))
    return target


@pytest.fixture(scope="module")
def lenet_run(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet trained briefly on digits: weights for the reduced-precision variants, whose
    accuracy gate runs on its test split (179 held-out images)."""
    run = tmp_path_factory.mktemp("runs") / "lenet"
    trained = run_zoo(
        "train", "lenet", "--data", "digits", "--epochs", "2", "--out", str(run),
        "--no-tensorboard", "--no-progress", path=site,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    return run


#: Records every telemetry event OpenVINO's tools and NNCF hand to openvino-telemetry
#: ("category action" lines in $TELEMETRY_LOG), and sends none.
TELEMETRY_HOOK = """
import os

import openvino_telemetry

def _record(self, event_category, event_action, *args, **kwargs):
    with open(os.environ["TELEMETRY_LOG"], "a") as log:
        log.write(f"{event_category} {event_action}\\n")

openvino_telemetry.Telemetry.send_event = _record
"""


@pytest.fixture(scope="module")
def lenet_int8(
    site: Path, lenet_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str], list[str]]:
    """The trained LeNet exported as OpenVINO fp32 and int8 (NNCF), with the telemetry events
    the export handed to openvino-telemetry."""
    where = tmp_path_factory.mktemp("int8")
    (where / "hook").mkdir()
    (where / "hook" / "sitecustomize.py").write_text(TELEMETRY_HOOK)
    log = where / "telemetry.log"
    out = where / "e"
    done = run_zoo(
        "export", "lenet", "--checkpoint", str(lenet_run), "--format", "openvino",
        "--precision", "fp32,int8", "--out", str(out), path=site,
        PYTHONPATH=os.pathsep.join([str(site), str(where / "hook")]),
        TELEMETRY_LOG=str(log),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, done, log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def lenet_export(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "lenet"
    done = run_zoo("export", "lenet", "--format", "onnx,openvino", "--out", str(out), path=site)
    assert done.returncode == 0, done.stderr
    return out


def test_the_plugin_registers_a_format_and_a_runtime(site: Path) -> None:
    records = {r["name"]: r for r in json.loads(run_zoo("plugins", "--json", path=site).stdout)}
    plugin = records["openvino"]
    assert (plugin["status"], plugin["distribution"], plugin["builtin"]) == (
        "loaded",
        "zoo-openvino",
        False,
    )
    assert (plugin["formats"], plugin["runtimes"]) == (
        ["openvino", "openvino-bf16", "openvino-int8"],
        ["openvino"],
    )
    formats = {f["name"]: f for f in json.loads(run_zoo("formats", "--json", path=site).stdout)}
    assert formats["openvino"]["files"] == ["model.xml", "model.bin"]
    assert formats["openvino"]["plugin"] == "openvino" and not formats["openvino"]["unavailable"]
    runtimes = json.loads(run_zoo("runtimes", "--json", path=site).stdout)
    assert {"name": "openvino", "format": "openvino"}.items() <= runtimes[-1].items()


def test_export_passes_the_parity_gate_with_the_preprocessing_inside(lenet_export: Path) -> None:
    manifest = json.loads((lenet_export / "manifest.json").read_text())
    entry = manifest["formats"]["openvino"]
    assert (entry["status"], entry["files"]) == ("ok", ["model.xml", "model.bin"])
    assert entry["details"] == {
        "from": "onnx opset 20",
        "pillow_resizes": 1,
        "inference_precision": "f32",
    }
    parity = entry["parity"]
    # Raw uint8 images smaller and larger than the model's 28x28, batches of 1 and 3.
    assert parity["passed"] and [c["input_shape"] for c in parity["checks"]] == [
        [1, 13, 13, 1],
        [1, 59, 59, 1],
        [3, 13, 13, 1],
        [3, 59, 59, 1],
    ]
    assert manifest["versions"]["openvino"].startswith(openvino.get_version()[:6])
    assert manifest["files"]["model.bin"]["bytes"] > 4 * 40_000  # fp32 weights, not fp16


def test_the_ir_runs_in_openvino_alone_and_matches_the_onnx_artifact(lenet_export: Path) -> None:
    import onnxruntime as ort

    images = np.random.default_rng(3).integers(0, 256, (5, 40, 33, 1), dtype=np.uint8)
    core = openvino.Core()
    compiled = core.compile_model(str(lenet_export / "model.xml"), "CPU", FP32)
    got = compiled(images)[compiled.outputs[0]]
    session = ort.InferenceSession(str(lenet_export / "model.onnx"))
    want = session.run(None, {"image": images})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_check_reverifies_the_openvino_artifact(site: Path, lenet_export: Path) -> None:
    done = run_zoo("export", "--check", str(lenet_export), path=site)
    assert done.returncode == 0, done.stderr
    assert "openvino" in done.stdout and "parity holds" in done.stdout
    # Without the plugin, zoo says which format it cannot check.
    bare = run_zoo(
        "export", "--check", str(lenet_export), path=site, ZOO_DISABLE_PLUGINS="openvino"
    )
    assert bare.returncode == 2 and "unknown format 'openvino'" in bare.stderr


def test_zoo_list_and_info_show_the_format(site: Path) -> None:
    listed = run_zoo("list", "lenet", path=site)
    header, row = listed.stdout.splitlines()[:2]
    assert " OV " in header
    assert row[header.index(" OV ") + 1 :].split()[0] == "?"  # not in zoo's measured record
    info = run_zoo("info", "lenet", path=site)
    assert "openvino not measured" in info.stdout


def test_bench_times_the_openvino_runtime_beside_the_others(
    site: Path, lenet_export: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.json"
    done = run_zoo(
        "bench",
        "lenet",
        "--artifacts",
        str(lenet_export),
        "--runtime",
        "eager,openvino",
        "--batch",
        "1,4",
        "--min-time",
        "0.05",
        "--min-iters",
        "5",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--max-rounds",
        "1",
        "--json",
        str(out),
        path=site,
        ZOO_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert done.returncode == 0, done.stderr
    run = load_run(out)
    rows = {(r.runtime, r.batch): r for r in run.rows}
    for batch in (1, 4):
        row = rows[("openvino", batch)]
        assert row.status == "ok", row.reason
        assert row.batch_latency_ms is not None and row.batch_latency_ms.p50 > 0
        assert row.speedup_vs_eager is not None and row.cold_start_ms
    assert "openvino" in done.stdout


def test_a_plugin_runtime_gets_the_offline_and_server_scenarios(
    site: Path, lenet_export: Path, tmp_path: Path
) -> None:
    """The plugin implements Runtime.load and nothing else: the scenarios come with it."""
    out = tmp_path / "run.json"
    done = run_zoo(
        "bench", "lenet", "--artifacts", str(lenet_export), "--runtime", "openvino",
        "--scenario", "offline,server", "--batch", "1,4", "--splits", "1x2,2x1",
        "--min-time", "0.05", "--min-iters", "5", "--warmup", "1", "--rounds", "1",
        "--max-rounds", "1", "--latency-bound", "20", "--server-requests", "30",
        "--json", str(out), path=site, ZOO_CACHE_DIR=str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {r.scenario: r for r in load_run(out).rows}
    assert set(rows) == {"offline", "server"}
    offline, server = rows["offline"], rows["server"]
    assert offline.status == "ok" and offline.samples_per_s and offline.samples_per_s > 0
    assert len(offline.detail["points"]) == 4  # type: ignore[index]
    assert server.status == "ok", server.reason
    assert [(s["sessions"], s["threads"]) for s in server.detail["splits"]] == [(1, 2), (2, 1)]  # type: ignore[index]


def test_eager_in_the_bench_runs_the_exported_weights(site: Path, lenet_export: Path) -> None:
    """The bench's eager module is rebuilt from weights.safetensors: it equals the artifact."""
    from safetensors.torch import load_file

    import zoo
    from zoo.export.bundle import make_bundle

    model = zoo.create_model("lenet").eval()
    model.load_state_dict(load_file(str(lenet_export / "weights.safetensors")))
    bundle, _, _ = make_bundle(zoo.get_spec("lenet"), model)
    images = torch.randint(0, 256, (2, 28, 28, 1), dtype=torch.uint8)
    core = openvino.Core()
    compiled = core.compile_model(str(lenet_export / "model.xml"), "CPU", FP32)
    got = compiled(images.numpy())[compiled.outputs[0]]
    with torch.no_grad():
        np.testing.assert_allclose(got, bundle(images).numpy(), atol=1e-4, rtol=1e-3)


def test_a_plugin_s_bf16_variant_is_gated_on_accuracy_and_benchmarked_as_its_own_row(
    site: Path, lenet_run: Path, tmp_path: Path
) -> None:
    """A third party's reduced-precision format: picked by --precision, gated on held-out
    accuracy, its precision carried inside the IR, timed by the plugin's own runtime."""
    out = tmp_path / "e"
    done = run_zoo(
        "export", "lenet", "--checkpoint", str(lenet_run), "--format", "openvino",
        "--precision", "fp32,bf16", "--out", str(out), path=site,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    formats = json.loads((out / "manifest.json").read_text())["formats"]
    bf16 = formats["openvino-bf16"]
    assert bf16["precision"] == "bf16" and bf16["files"] == ["model.bf16.xml", "model.bf16.bin"]
    assert bf16["accuracy"]["passed"] and bf16["accuracy"]["dataset"] == "digits"
    assert formats["openvino"]["accuracy"]["agreement"] == 1.0
    core = openvino.Core()
    model = core.read_model(out / "model.bf16.xml")
    hint = ["runtime_options", "INFERENCE_PRECISION_HINT"]
    assert model.get_rt_info(hint).astype(str) == "bf16"  # any OpenVINO program reads it
    assert not core.read_model(out / "model.xml").has_rt_info(hint)
    rows = _bench_openvino(out, "fp32,bf16", site, tmp_path)
    assert {(r["runtime"], r["precision"], r["status"]) for r in rows} == {
        ("openvino", "fp32", "ok"),
        ("openvino", "bf16", "ok"),
    }


def test_the_int8_variant_is_quantized_by_nncf_and_gated_on_accuracy(
    lenet_int8: tuple[Path, subprocess.CompletedProcess[str], list[str]],
) -> None:
    """openvino-int8: the IR quantized by nncf.quantize, calibrated on the training split,
    gated on held-out accuracy, with what NNCF did in the manifest."""
    out, done, _ = lenet_int8
    manifest = json.loads((out / "manifest.json").read_text())
    int8 = manifest["formats"]["openvino-int8"]
    assert int8["precision"] == "int8" and int8["files"] == ["model.int8.xml", "model.int8.bin"]
    assert int8["accuracy"]["passed"] and int8["accuracy"]["dataset"] == "digits"
    assert int8["parity"]["checks"] and not int8["parity"]["passed"]  # recorded, not required
    assert int8["calibration"] == {"dataset": "digits", "split": "train", "samples": 256}
    assert int8["cpu_features"] == ["avx512_vnni", "avx_vnni", "amx_int8"]
    assert int8["details"] == {
        "from": "onnx opset 20",
        "pillow_resizes": 1,
        "inference_precision": "f32",
        "method": "nncf.quantize",
        "nncf": metadata.version("nncf"),
        "samples": 256,
        "batch": 32,
        "subset_size": 8,
        "preset": "performance",
        "weights": "int8, per channel, symmetric",
        "activations": "8-bit, per tensor; range: the mean of each batch's min and max",
        "fast_bias_correction": True,
    }
    assert manifest["versions"]["nncf"] == metadata.version("nncf")
    # Quantized for real: int8 weights, activations through FakeQuantize, readable by any
    # OpenVINO program; the fp32 IR beside it is untouched.
    model = openvino.Core().read_model(out / "model.int8.xml")
    ops = [op.get_type_name() for op in model.get_ordered_ops()]
    constants = {
        op.get_element_type().get_type_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant"
    }
    assert "FakeQuantize" in ops and "i8" in constants
    fp32 = openvino.Core().read_model(out / "model.xml")
    assert "FakeQuantize" not in [op.get_type_name() for op in fp32.get_ordered_ops()]
    assert manifest["files"]["model.int8.bin"]["bytes"] < manifest["files"]["model.bin"]["bytes"]
    # NNCF's progress bars and log lines are kept out of zoo's output.
    assert "nncf" not in done.stdout.lower() and "━━━━━━━━━━" not in done.stdout
    assert "nncf" not in done.stderr.lower() and "CUDA_HOME" not in done.stderr


def test_nncf_sends_no_telemetry_from_zoo(
    lenet_int8: tuple[Path, subprocess.CompletedProcess[str], list[str]],
) -> None:
    """NNCF reports each nncf.quantize call (openvino-telemetry) unless told not to: the
    plugin imports it with its switch set. OpenVINO's own events are seen, so the hook works."""
    _, _, events = lenet_int8
    assert any(e.startswith("ovc ") for e in events)
    assert not [e for e in events if e.startswith("nncf")]


def test_bench_times_the_int8_ir_with_the_openvino_runtime(
    site: Path,
    lenet_int8: tuple[Path, subprocess.CompletedProcess[str], list[str]],
    tmp_path: Path,
) -> None:
    out, _, _ = lenet_int8
    rows = _bench_openvino(out, "int8", site, tmp_path)
    int8 = [r for r in rows if r["precision"] == "int8"]
    assert [(r["runtime"], r["status"]) for r in int8] == [("openvino", "ok")]
    assert int8[0]["accuracy"]["passed"] and int8[0]["batch_latency_ms"]["p50"] > 0


#: nncf cannot be imported in a process with this ``sitecustomize`` on its path.
NO_NNCF = 'import sys\nsys.modules["nncf"] = None\n'


def test_without_nncf_the_int8_variant_is_refused_in_one_line_and_its_ir_still_runs(
    site: Path,
    lenet_run: Path,
    lenet_int8: tuple[Path, subprocess.CompletedProcess[str], list[str]],
    tmp_path: Path,
) -> None:
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(NO_NNCF)
    hidden = {"PYTHONPATH": os.pathsep.join([str(site), str(tmp_path / "hook")])}
    formats = {
        f["name"]: f for f in json.loads(run_zoo("formats", "--json", path=site, **hidden).stdout)
    }
    assert formats["openvino-int8"]["unavailable"] == "nncf is not installed: pip install nncf"
    assert not formats["openvino"]["unavailable"] and not formats["openvino-bf16"]["unavailable"]
    out = tmp_path / "e"
    refused = run_zoo(
        "export", "lenet", "--checkpoint", str(lenet_run), "--format", "openvino",
        "--precision", "fp32,int8", "--out", str(out), path=site, **hidden,
    )  # fmt: skip
    assert refused.returncode == 2 and not out.exists()
    assert refused.stderr == (
        "zoo: error: format 'openvino-int8' is not available here: "
        "nncf is not installed: pip install nncf\n"
    )
    # Only quantizing needs nncf: its IR is re-gated with OpenVINO alone.
    export, _, _ = lenet_int8
    check = run_zoo("export", "--check", str(export), path=site, **hidden)
    assert check.returncode == 0, check.stderr
    assert "openvino-int8" in check.stdout
