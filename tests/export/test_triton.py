"""``zoo export --format triton``: a Triton model repository inside the export, made from real
trained models (LeNet on digits, the GRU on names), its ``config.pbtxt`` parsed with Triton's
own schema (``tritonclient``'s ``model_config``) and held field by field to the manifest, its
labels to the manifest's, its model run in ONNX Runtime against eager PyTorch and the ``onnx``
artifact on real data, and every file of it under the manifest's hashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import zoo
from zoo.bench.artifacts import vet_export
from zoo.bench.worker import source_of
from zoo.data import load_dataset
from zoo.export.exporter import check_export, export_model
from zoo.export.manifest import ArtifactError, Manifest, read_manifest, verify_export
from zoo.formats import ExportRequest
from zoo.plugins.triton import (
    MAX_BATCH_SIZE,
    MAX_QUEUE_DELAY_US,
    TritonFormat,
    model_config,
)
from zoo.registry import InputSpec, OutputSpec
from zoo.train import train

#: What the manifest's dtypes are in Triton's schema: written out here, not taken from the
#: plugin, so that a wrong entry there fails.
TRITON_TYPES = {"uint8": mc.TYPE_UINT8, "int64": mc.TYPE_INT64, "float32": mc.TYPE_FP32}


def _trained_export(root: Path, model: str, data: str) -> Path:
    """``model`` trained one epoch on ``data`` (its labels go into the checkpoint), exported to
    ``onnx`` and ``triton`` from its checkpoint. Batches of 256 and 64 samples gated: half the
    time of the defaults (the recurrent model's steps cost the most), and the weights are
    real all the same."""
    train(
        model, data, epochs=1, batch_size=256, out=str(root / "run"), progress=False,
        tensorboard=False,
    )  # fmt: skip
    out = root / "export"
    report = export_model(
        model, out, checkpoint=root / "run", formats=("onnx", "triton"), eval_samples=64
    )
    assert report.ok, report.manifest.failures()
    return out


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trained_export(tmp_path_factory.mktemp("lenet"), "lenet", "digits")


@pytest.fixture(scope="module")
def gru(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trained_export(tmp_path_factory.mktemp("gru"), "gru", "names")


@pytest.fixture(params=["lenet", "gru"])
def export(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(request.param)
    return path


def _config(export: Path, manifest: Manifest) -> mc.ModelConfig:
    text = (export / "triton" / manifest.model / "config.pbtxt").read_text(encoding="utf-8")
    return text_format.Parse(text, mc.ModelConfig())


def test_the_repository_is_laid_out_as_triton_reads_it_and_listed_in_the_manifest(
    export: Path,
) -> None:
    manifest = read_manifest(export)
    model = manifest.model
    record = manifest.formats["triton"]
    assert record.ok and record.precision == "fp32" and record.devices == ("cpu",)
    # The model first: what a runtime loads, as every format's record names it.
    assert record.files == (
        f"triton/{model}/1/model.onnx",
        f"triton/{model}/config.pbtxt",
        f"triton/{model}/labels.txt",
    )
    on_disk = sorted(
        str(p.relative_to(export)) for p in (export / "triton").rglob("*") if p.is_file()
    )
    assert on_disk == sorted(record.files)
    assert all(f in manifest.files for f in record.files)  # each with its sha256 and size
    assert record.details["model_name"] == model
    assert record.details["max_batch_size"] == MAX_BATCH_SIZE
    # Gated as the onnx format is: the same inputs, in ONNX Runtime, against eager.
    assert record.parity is not None and record.parity.passed
    shapes = [c.input_shape for c in record.parity.checks]
    assert shapes == [c.input_shape for c in manifest.formats["onnx"].parity.checks]  # type: ignore[union-attr]


def test_config_parses_with_tritons_schema_and_says_what_the_manifest_says(export: Path) -> None:
    manifest = read_manifest(export)
    config = _config(export, manifest)
    assert config.name == manifest.model
    assert config.backend == "onnxruntime"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == MAX_BATCH_SIZE == 64
    assert config.dynamic_batching.max_queue_delay_microseconds == MAX_QUEUE_DELAY_US
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_CPU, 1)
    ]
    (tensor,) = manifest.inputs
    (got,) = config.input
    assert got.name == tensor.name
    assert got.data_type == TRITON_TYPES[tensor.dtype]
    # The batch axis left out (Triton batches), -1 on every other dynamic axis.
    assert list(got.dims) == [
        -1 if axis + 1 in tensor.dynamic_axes else size for axis, size in enumerate(tensor.shape)
    ]
    assert [o.name for o in config.output] == manifest.output_names
    for out, record in zip(config.output, manifest.outputs, strict=True):
        assert out.data_type == TRITON_TYPES[record.dtype]
        assert list(out.dims) == list(record.shape)
    # Class scores carry the labels (Triton's classification extension).
    assert [o.label_filename for o in config.output] == ["labels.txt"]


def test_config_is_what_each_model_takes(lenet: Path, gru: Path) -> None:
    """Written out for the two models: uint8 NHWC images of any size; int64 ids of any
    length."""
    image = _config(lenet, read_manifest(lenet))
    assert (image.input[0].name, image.input[0].data_type) == ("image", mc.TYPE_UINT8)
    assert list(image.input[0].dims) == [-1, -1, 1]
    assert (image.output[0].name, list(image.output[0].dims)) == ("logits", [10])
    manifest = read_manifest(gru)
    ids = _config(gru, manifest)
    assert (ids.input[0].data_type, list(ids.input[0].dims)) == (mc.TYPE_INT64, [-1])
    assert manifest.labels is not None  # the languages of names, one score each
    assert list(ids.output[0].dims) == [len(manifest.labels.classes)]


def test_labels_file_holds_the_manifests_classes_one_a_line(export: Path) -> None:
    manifest = read_manifest(export)
    assert manifest.labels is not None
    text = (export / "triton" / manifest.model / "labels.txt").read_text(encoding="utf-8")
    assert text.splitlines() == list(manifest.labels.classes)
    assert text.endswith("\n")


def _real_inputs(model: str, manifest: Manifest) -> list[torch.Tensor]:
    """Batches of real test samples as the export takes them: uint8 NHWC digits at two sizes
    (the model resizes them); padded name ids."""
    splits = load_dataset("digits" if model == "lenet" else "names", zoo.get_spec(model).input)
    samples = [splits.test[i] for i in range(8)]
    if model == "lenet":
        pixels = torch.stack([x for x, _ in samples])  # [8, 1, 28, 28] in [0, 1]
        small = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        large = torch.nn.functional.interpolate(pixels, size=(41, 37), mode="bilinear")
        large = (large * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return [small, large.contiguous(), small[:1]]
    ids, _ = splits.collate_fn(samples)
    return [ids, ids[:1, : int((ids[0] != 0).sum())]]


def test_model_runs_in_onnxruntime_as_eager_and_the_onnx_artifact_on_real_data(
    export: Path,
) -> None:
    manifest = read_manifest(export)
    model = manifest.model
    triton = ort.InferenceSession(
        str(export / "triton" / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    onnx = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in triton.get_inputs()] == [manifest.inputs[0].name]
    assert [o.name for o in triton.get_outputs()] == manifest.output_names
    eager = source_of(export, manifest).module()
    for x in _real_inputs(model, manifest):
        assert str(x.dtype).removeprefix("torch.") == manifest.inputs[0].dtype
        (got,) = triton.run(None, {manifest.inputs[0].name: x.numpy()})
        (reference,) = onnx.run(None, {manifest.inputs[0].name: x.numpy()})
        with torch.no_grad():
            expected = eager(x).numpy()
        np.testing.assert_array_equal(got, reference)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
        assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_bench_artifacts_vetting_and_check_accept_it(lenet: Path) -> None:
    manifest = read_manifest(lenet)
    vet_export(lenet, manifest)  # what zoo bench --artifacts and zoo predict do first
    results = check_export(lenet)  # zoo export --check: hashes, then the gate again
    assert results["triton"].passed and results["onnx"].passed


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("config", "triton/lenet/config.pbtxt: sha256 does not match the manifest"),
        ("labels", "triton/lenet/labels.txt: sha256 does not match the manifest"),
        ("version", "would read 'triton/lenet/2/model.onnx', which the manifest does not list"),
        ("model", "triton/ holds 2 entries, not the one model zoo writes"),
        ("link", "its folder triton/lenet is a symbolic link"),
    ],
)
def test_a_tampered_repository_is_refused_in_one_line(
    lenet: Path, tmp_path: Path, change: str, problem: str
) -> None:
    export = tmp_path / "export"
    shutil.copytree(lenet, export)
    folder = export / "triton" / "lenet"
    if change == "config":  # the same size: only the hash tells
        text = (folder / "config.pbtxt").read_text()
        (folder / "config.pbtxt").write_text(text.replace("KIND_CPU", "KIND_GPU"))
    elif change == "labels":
        (folder / "labels.txt").write_text("a\n" * 10)
    elif change == "version":  # Triton serves the highest version: one zoo never gated
        (folder / "2").mkdir()
        shutil.copy(folder / "1" / "model.onnx", folder / "2" / "model.onnx")
    elif change == "model":  # Triton serves every model of the repository
        shutil.copytree(folder, export / "triton" / "other")
    else:
        shutil.move(folder, tmp_path / "elsewhere")
        folder.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ArtifactError) as caught:
        verify_export(export, read_manifest(export))
    message = str(caught.value)
    assert problem in message and "\n" not in message
    with pytest.raises(ArtifactError, match=r"manifest\.json"):
        vet_export(export, read_manifest(export))


@pytest.mark.parametrize(
    "name",
    [
        "triton/../../outside/config.pbtxt",  # out of the export
        "triton/lenet/../../../x",
        "triton//config.pbtxt",
        "triton/.lenet/config.pbtxt",  # hidden
        "triton/lenet/1/2/model.onnx",  # five parts: deeper than any format writes
        "/triton/lenet/config.pbtxt",
    ],
)
def test_a_manifest_naming_a_path_out_of_its_folders_is_refused(
    lenet: Path, tmp_path: Path, name: str
) -> None:
    export = tmp_path / "export"
    shutil.copytree(lenet, export)
    data = json.loads((export / "manifest.json").read_text())
    data["files"][name] = data["files"].pop("triton/lenet/config.pbtxt")
    files = data["formats"]["triton"]["files"]
    files[files.index("triton/lenet/config.pbtxt")] = name
    (export / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="must be a plain file name inside the export") as e:
        read_manifest(export)
    assert repr(name)[:-1] in str(e.value)


def test_strings_are_quoted_and_escaped_as_protobufs_text_format_reads_them() -> None:
    odd = 'in"put\\ \n\t é'
    spec = InputSpec((3,), dtype="float32", name=odd, dynamic_axes={0: "batch"})
    text = model_config("m-1.x_y", spec, (OutputSpec('"out"', (4,)),), classes=4)
    config = text_format.Parse(text, mc.ModelConfig())
    assert config.name == "m-1.x_y"
    assert config.input[0].name == odd
    assert config.output[0].name == '"out"'
    assert config.output[0].label_filename == "labels.txt"


def test_labels_go_on_the_one_output_of_class_scores_only() -> None:
    spec = InputSpec((3,), name="x")
    topk = (OutputSpec("scores", (5,)), OutputSpec("indices", (5,), "int64"))
    config = text_format.Parse(model_config("m", spec, topk, classes=5), mc.ModelConfig())
    assert [o.label_filename for o in config.output] == ["", ""]
    assert [o.data_type for o in config.output] == [mc.TYPE_FP32, mc.TYPE_INT64]
    for classes, named in ((5, "labels.txt"), (4, ""), (None, "")):
        text = model_config("m", spec, topk[:1], classes=classes)
        assert text_format.Parse(text, mc.ModelConfig()).output[0].label_filename == named


def test_a_model_without_a_dynamic_batch_is_not_batched_by_triton() -> None:
    spec = InputSpec((7,), dtype="int64", name="ids", dynamic_axes={1: "length"})
    text = model_config("m", spec, (OutputSpec("logits", (2,)),), batch=2)
    config = text_format.Parse(text, mc.ModelConfig())
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [2, -1]
    assert list(config.output[0].dims) == [2, 2]


def test_class_names_with_line_breaks_and_non_triton_names_are_refused(tmp_path: Path) -> None:
    spec = InputSpec((3,), name="x")
    request = ExportRequest(
        torch.nn.Identity(), spec.example(2), spec, ("y",), tmp_path, model="m",
        outputs=(OutputSpec("y", (3,)),), labels=("a", "b\nc", "d"),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"holds a line break: labels\.txt has one a line"):
        TritonFormat().export(request)
    with pytest.raises(ValueError, match="is not a Triton model name"):
        TritonFormat().export(
            ExportRequest(torch.nn.Identity(), spec.example(2), spec, ("y",), tmp_path, model="..")
        )
