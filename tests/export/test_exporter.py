"""zoo export: artifacts, manifest, the parity gate, re-checks, bad input, bare runtimes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo._pluginmanager import get_plugins
from zoo.cli import cli
from zoo.export import exporter
from zoo.export.bundle import make_bundle
from zoo.export.exporter import check_export, export_model
from zoo.export.manifest import ArtifactError, Labels, read_manifest, sha256
from zoo.formats import Format, Runner
from zoo.plugins import onnx as onnx_plugin
from zoo.plugins.torchscript import load
from zoo.transforms import default_transform


@pytest.fixture(scope="module")
def lenet_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "lenet"
    report = export_model("lenet", out, raw=True, seed=5)
    assert report.ok, report.manifest.failures()
    return out


def test_raw_export_writes_every_format_with_a_manifest(lenet_raw: Path) -> None:
    manifest = json.loads((lenet_raw / "manifest.json").read_text())
    assert manifest["model"] == "lenet" and manifest["raw"] is True
    assert manifest["format_version"] == 2
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["versions"]["onnxruntime"]  # each format's libraries
    assert manifest["inputs"][0]["shape"] == ["batch", 1, 28, 28]
    assert manifest["outputs"] == [
        {
            "name": "logits",
            "dtype": "float32",
            "shape": ["batch", 10],
            "dynamic_axes": {"0": "batch"},
        }
    ]
    assert manifest["formats"]["onnx"]["details"] == {"opset": 20, "external_data": False}
    assert manifest["weights"] == {
        "source": "fresh weights (seed 5)",
        "file": "weights.safetensors",
    }
    for fmt, file in (("torchscript", "model.ts"), ("onnx", "model.onnx"), ("pt2", "model.pt2")):
        entry = manifest["formats"][fmt]
        assert (entry["status"], entry["files"]) == ("ok", [file])
        assert manifest["files"][file]["sha256"] == sha256(lenet_raw / file)
        parity = entry["parity"]
        assert parity["passed"] and [c["input_shape"][0] for c in parity["checks"]] == [1, 3]
    assert manifest["formats"]["torchscript"]["parity"]["variants"]["optimized"]["passed"]
    assert set(manifest["files"]) == {
        "model.ts",
        "model.onnx",
        "model.pt2",
        "parity.safetensors",
        "weights.safetensors",
    }
    assert not list(lenet_raw.parent.glob(".lenet*"))  # no staging left behind


def test_export_saves_the_exact_weights_it_was_made_from(lenet_raw: Path) -> None:
    from safetensors.torch import load_file

    torch.manual_seed(5)
    model = zoo.create_model("lenet")
    saved = load_file(str(lenet_raw / "weights.safetensors"))
    assert saved.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)


def test_check_reverifies_and_catches_tampering(lenet_raw: Path, tmp_path: Path) -> None:
    results = check_export(lenet_raw)
    assert set(results) == {"torchscript", "onnx", "pt2"}
    assert all(r.passed for r in results.values())
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(lenet_raw), str(copy)], check=True)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF  # the same size: only the hash can tell
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx: sha256 does not match"):
        check_export(copy)
    result = CliRunner().invoke(cli, ["export", "--check", str(copy)])
    assert result.exit_code == 1 and "sha256 does not match" in result.stderr


def test_check_says_which_artifacts_cannot_run_here_and_vouches_for_none_of_them(
    lenet_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export carried to a machine its format cannot run on (an aoti-cuda package on a
    CPU): --check verifies its files, says it did not run it, and does not say it holds."""
    pt2 = type(get_plugins().formats.get("pt2"))
    monkeypatch.setattr(pt2, "unavailable", lambda self: "it needs a device this has not")
    result = CliRunner().invoke(cli, ["export", "--check", str(lenet_raw)])
    assert result.exit_code == 0, result.output
    assert "note: pt2: not checked here: it needs a device this has not" in result.stderr
    assert result.stdout.strip().endswith("parity holds (not checked here: pt2)")
    assert "pt2" not in check_export(lenet_raw)


@pytest.mark.parametrize(
    ("broken", "variant", "kept"),
    [
        ("onnx", "", ("model.ts", "model.pt2")),
        ("torchscript", "optimized", ("model.onnx", "model.pt2")),
    ],
    ids=["onnx", "torchscript-optimized-only"],
)
def test_parity_failure_removes_the_artifact_and_fails(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
    variant: str,
    kept: tuple[str, ...],
) -> None:
    fmt = get_plugins().formats.get(broken)
    real = type(fmt).load

    def off_by_a_bit(self: Format, directory: Path, variant_: str = "") -> Runner:
        run = real(self, directory, variant_)
        if variant_ != variant:
            return run
        return lambda x: tuple(o + 1e-2 for o in run(x))

    monkeypatch.setattr(type(fmt), "load", off_by_a_bit)
    out = tmp_path / "bad"
    result = CliRunner().invoke(cli, ["export", "lenet", "--raw", "--out", str(out)])
    assert result.exit_code == 1
    assert f"zoo: {broken}: failed: parity failed: logits differs by up to 1.00e-02" in (
        result.stderr
    )
    assert "FAIL" in result.output and "1.00e-02" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["formats"][broken]
    assert (entry["status"], entry["files"]) == ("failed", [])
    assert entry["reason"].startswith("parity failed") and not entry["parity"]["passed"]
    assert not any((out / file).exists() for file in fmt.files)
    assert all((out / file).exists() for file in kept)


def test_interrupted_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "_export_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model("lenet", tmp_path / "x", raw=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opset": 9}, r"opset 9 is not supported: choose 18 to \d+"),
        ({"formats": ("tflite",)}, "unknown format 'tflite'"),
        ({"formats": ()}, "give at least one format"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(zoo.UsageError, match=message):
        export_model("lenet", tmp_path / "x", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(zoo.UsageError, match="cannot write to"):
        export_model("lenet", blocker / "sub" / "out", raw=True)


def test_checkpoint_export_uses_the_trained_weights_and_refuses_other_models(
    tmp_path: Path,
) -> None:
    from zoo.checkpoint import load_checkpoint
    from zoo.train import train

    run = tmp_path / "run"
    train("lenet", data="digits", epochs=1, out=str(run), tensorboard=False, progress=False)
    report = export_model(
        "lenet", tmp_path / "exp", checkpoint=run, raw=True, formats=("torchscript",)
    )
    assert report.ok
    assert report.manifest.weights_source == str(load_checkpoint(run, tag="best").path)
    # The labels of the dataset it was trained on travel with it: the digits, in index order.
    assert report.manifest.labels == Labels("digits", tuple("0123456789"))
    assert read_manifest(tmp_path / "exp").labels == report.manifest.labels

    loaded = load(tmp_path / "exp" / "model.ts")
    model = zoo.create_model("lenet").eval()
    load_checkpoint(run, tag="best").load_into(model, "lenet")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(zoo.UsageError, match="holds model 'lenet', not 'googlenet'"):
        export_model("googlenet", tmp_path / "exp2", checkpoint=run)


@pytest.mark.parametrize(
    "name,args",
    [
        ("lstm", {}),
        # The notes' classifier: PyTorch's stacking, run layer by layer within lengths.
        ("gru", {"bidirectional": True, "num_layers": 2, "stacking": "pytorch"}),
    ],
    ids=["lstm", "gru-bidirectional-pytorch-stacking"],
)
def test_lstm_export_keeps_batch_and_time_dynamic(
    name: str, args: dict[str, Any], tmp_path: Path
) -> None:
    report = export_model(name, tmp_path / name, model_args=args, seed=3)
    assert report.ok, report.manifest.failures()
    for fmt in ("torchscript", "onnx", "pt2"):
        parity = report.manifest.formats[fmt].parity
        assert parity is not None
        shapes = [c.input_shape for c in parity.checks]
        assert sorted({s[0] for s in shapes}) == [1, 3] and len({s[1] for s in shapes}) == 2
    # Each artifact, at a batch and lengths the gate did not try: a padded batch gives each
    # sequence the logits it gets alone.
    seqs = [[5, 9, 3], [7, 2, 8, 4, 6, 1, 12, 30, 2, 2, 7], [11], [3, 3, 40, 2]]
    padded = torch.tensor([s + [0] * (13 - len(s)) for s in seqs])
    for fmt in ("torchscript", "onnx", "pt2"):
        run = get_plugins().formats.get(fmt).load(tmp_path / name)
        batched = np.asarray(run(padded)[0])
        alone = np.concatenate([np.asarray(run(torch.tensor([s]))[0]) for s in seqs])
        np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=1e-4, err_msg=fmt)


BARE_ONNX = """
    import sys
    import numpy as np
    import onnxruntime as ort
    x = np.load(sys.argv[2])
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    np.save(sys.argv[3], session.run(None, {session.get_inputs()[0].name: x})[0])
    assert not any(m == "zoo" or m.startswith("zoo.") or m == "torch" for m in sys.modules)
"""
BARE_TORCH = """
    import sys, warnings
    import numpy as np
    import torch
    warnings.simplefilter("ignore")
    x = torch.from_numpy(np.load(sys.argv[2]))
    if sys.argv[1].endswith(".ts"):
        module = torch.jit.load(sys.argv[1])
    elif sys.argv[1].endswith(".aoti.pt2"):
        module = torch._inductor.aoti_load_package(sys.argv[1])
    else:
        module = torch.export.load(sys.argv[1]).module()
    with torch.no_grad():
        np.save(sys.argv[3], module(x).numpy())
    assert not any(m == "zoo" or m.startswith("zoo.") for m in sys.modules)
"""


@pytest.mark.parametrize("file", ["model.onnx", "model.ts", "model.pt2"])
def test_artifacts_run_without_zoo(lenet_raw: Path, tmp_path: Path, file: str) -> None:
    x = torch.randn(5, 1, 28, 28)
    np.save(tmp_path / "x.npy", x.numpy())
    code = textwrap.dedent(BARE_ONNX if file.endswith(".onnx") else BARE_TORCH)
    subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            code,
            str(lenet_raw / file),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    reference = load(lenet_raw / "model.ts")  # parity-checked against eager at export
    with torch.no_grad():
        expected = reference(x).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", ["lenet", "vae"])
def test_bundles_take_raw_uint8_images(name: str, tmp_path: Path) -> None:
    report = export_model(name, tmp_path / name, seed=7)
    assert report.ok, report.manifest.failures()
    manifest = report.manifest.to_dict()
    spec = zoo.get_spec(name)
    channels, height, width = spec.input.shape
    assert manifest["inputs"][0]["dtype"] == "uint8"
    assert manifest["inputs"][0]["shape"] == ["batch", height, width, channels]
    assert [s["op"] for s in manifest["preprocessing"]] == [
        "ToFloat",
        "Resize",
        "ToChannels",
        "Normalize",
    ]
    assert [o["name"] for o in manifest["outputs"]] == [o.name for o in spec.outputs]
    assert manifest["formats"]["torchscript"]["details"]["method"] == "script"

    torch.manual_seed(7)
    model = zoo.create_model(name).eval()
    pipeline = default_transform(spec.input)
    assert pipeline is not None
    # Decoded images of another size than the model's: the bundle resizes them itself.
    images = torch.randint(0, 256, (2, height + 9, width - 5, channels), dtype=torch.uint8)
    with torch.no_grad():
        eager = model(pipeline(images))
        exported = load(tmp_path / name / "model.ts")(images)
    eager = eager if isinstance(eager, tuple) else (eager,)
    exported = exported if isinstance(exported, tuple) else (exported,)
    for got, want in zip(exported, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_softmax_postprocess_gives_probabilities(tmp_path: Path) -> None:
    import onnxruntime as ort

    report = export_model("lenet", tmp_path / "p", postprocess="softmax", formats=("onnx",))
    assert report.ok and report.manifest.output_names == ["probabilities"]

    session = ort.InferenceSession(str(tmp_path / "p" / "model.onnx"))
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    probabilities = session.run(None, {"image": images})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(zoo.UsageError, match="softmax needs a classifier"):
        export_model("vae", tmp_path / "v", postprocess="softmax")


def test_topk_postprocess_gives_the_best_classes_in_every_format(tmp_path: Path) -> None:
    import onnxruntime as ort

    report = export_model("lenet", tmp_path / "k", postprocess="topk", top_k=3, seed=0)
    assert report.ok, report.manifest.failures()
    assert (report.manifest.postprocess, report.manifest.top_k) == ("topk", 3)
    assert [(o.name, o.dtype, o.shape) for o in report.manifest.outputs] == [
        ("scores", "float32", (3,)),
        ("indices", "int64", (3,)),
    ]

    session = ort.InferenceSession(str(tmp_path / "k" / "model.onnx"))
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    scores, indices = session.run(None, {"image": images})
    assert indices.dtype == np.int64 and np.all(np.diff(scores, axis=1) <= 0)
    # The same classes eager softmax ranks first, for the exported weights.
    spec = zoo.get_spec("lenet")
    torch.manual_seed(0)  # export_model built its model from the same seed
    plain, _, _ = make_bundle(spec, spec.build(), postprocess="softmax")
    with torch.no_grad():
        probabilities = plain(torch.from_numpy(images)).numpy()
    np.testing.assert_array_equal(indices, np.argsort(-probabilities, axis=1)[:, :3])
    np.testing.assert_allclose(scores, np.take_along_axis(probabilities, indices, 1), atol=1e-5)
    with pytest.raises(zoo.UsageError, match="has 10 classes; choose 1 to 10"):
        export_model("lenet", tmp_path / "x", postprocess="topk", top_k=11)


def test_aoti_package_is_compiled_gated_and_runs_with_torch_alone(tmp_path: Path) -> None:
    out = tmp_path / "aoti"
    report = export_model("lenet", out, formats=("aoti",), seed=3)
    assert report.ok, report.manifest.failures()
    record = report.manifest.formats["aoti"]
    assert (record.status, record.files) == ("ok", ("model.aoti.pt2",))
    assert record.parity is not None
    assert {c.input_shape[0] for c in record.parity.checks} == {1, 3}
    assert check_export(out)["aoti"].passed
    # Raw uint8 images of a size the parity gate did not use, in a process without zoo.
    images = torch.randint(0, 256, (4, 40, 36, 1), dtype=torch.uint8)
    np.save(tmp_path / "x.npy", images.numpy())
    files = [str(out / "model.aoti.pt2"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]
    subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(BARE_TORCH), *files],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    torch.manual_seed(3)
    spec = zoo.get_spec("lenet")
    bundle, _, _ = make_bundle(spec, spec.build())
    with torch.no_grad():
        expected = bundle(images).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4, rtol=1e-3)


def test_large_models_keep_onnx_weights_in_an_external_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # VGG16's 528 MB take the same path; a zero threshold sends LeNet's weights there too.
    monkeypatch.setattr(onnx_plugin, "EXTERNAL_DATA_BYTES", 0)
    out = tmp_path / "ext"
    report = export_model("lenet", out, formats=("onnx",))
    assert report.ok, report.manifest.failures()
    record = report.manifest.formats["onnx"]
    assert record.details["external_data"] is True
    assert record.files == ("model.onnx", "model.onnx.data")
    data = [f for f in report.manifest.files if f.startswith("model.onnx") and f != "model.onnx"]
    assert data == ["model.onnx.data"] and (out / data[0]).stat().st_size > 100_000  # 0.25 MB
    assert (out / "model.onnx").stat().st_size < 100_000
    assert check_export(out)["onnx"].passed
    with open(out / data[0], "r+b") as handle:  # the weights are hashed like the graph
        handle.write(b"\\1\\2\\3\\4")
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        check_export(out)


def test_an_out_that_is_a_symbolic_link_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    from zoo.errors import UsageError

    real = tmp_path / "v3"
    real.mkdir()
    link = tmp_path / "latest"
    link.symlink_to(real)
    with pytest.raises(UsageError, match=r"--out .*latest is a symbolic link \(to .*v3\)"):
        export_model("lenet", link, formats=["torchscript"])
    assert link.is_symlink() and list(real.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "v3"]
