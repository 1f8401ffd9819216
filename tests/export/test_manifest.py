"""manifest.json is untrusted input: the Manifest record refuses anything zoo did not write,
and never lets a manifest point zoo at a file outside its export directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.export.exporter import check_export, export_model
from zoo.export.manifest import ArtifactError, Labels, Manifest, labels_misfit, read_manifest


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "lenet"
    assert export_model("lenet", out, raw=True, formats=("onnx",)).ok
    return out


def _tampered(export: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    data = json.loads((copy / "manifest.json").read_text())
    change(data)
    (copy / "manifest.json").write_text(json.dumps(data))
    return copy


def test_the_record_round_trips(export: Path) -> None:
    manifest = read_manifest(export)
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert manifest.artifacts() == {"onnx": "model.onnx"}
    assert manifest.formats["onnx"].parity is not None


def test_labels_round_trip_and_an_export_of_fresh_weights_has_none(export: Path) -> None:
    assert read_manifest(export).labels is None
    labels = Labels("names", ("Arabic", "Chinese"), ("<pad>", "<unk>", "a", "b"))
    with_labels = _tampered(export, export.parent / "with", lambda m: None)
    manifest = read_manifest(with_labels)
    data = {**manifest.to_dict(), "labels": labels.to_dict()}
    assert Manifest.from_dict(json.loads(json.dumps(data))).labels == labels


def test_labels_come_from_a_checkpoints_dataset_when_it_says_them() -> None:
    digits = {"name": "digits", "kind": "image", "class_names": list("0123456789")}
    assert Labels.of_checkpoint({"dataset": digits}) == Labels("digits", tuple("0123456789"))
    names = {"name": "names", "kind": "tokens", "class_names": ["Arabic", "Czech"]}
    vocabulary = ["<pad>", "<unk>", "a"]
    assert Labels.of_checkpoint({"dataset": {**names, "vocabulary": vocabulary}}) == Labels(
        "names", ("Arabic", "Czech"), tuple(vocabulary)
    )
    # Without them: zoo 0.1's token checkpoints (no vocabulary), no dataset, malformed names.
    assert Labels.of_checkpoint({"dataset": names}) is None
    assert Labels.of_checkpoint({}) is None
    assert Labels.of_checkpoint({"dataset": {**digits, "class_names": ["0", "0"]}}) is None
    assert Labels.of_checkpoint({"dataset": {**digits, "class_names": [0, 1]}}) is None


def test_labels_must_fit_the_outputs_they_name() -> None:
    ten = Labels("digits", tuple("0123456789"))
    assert labels_misfit(ten, "none", None, [(10,)]) is None
    assert labels_misfit(ten, "softmax", None, [(7,)]) == (
        "labels.classes lists 10 classes for 7 scores"
    )
    assert labels_misfit(ten, "topk", 5, [(5,), (5,)]) is None
    assert labels_misfit(ten, "topk", 11, [(11,), (11,)]) == (
        "labels.classes lists 10 classes, fewer than k=11"
    )


def _escape_file(data: dict[str, Any]) -> None:
    data["files"]["../../x/model.onnx"] = data["files"].pop("model.onnx")
    data["formats"]["onnx"]["files"] = ["../../x/model.onnx"]


def _absolute_file(data: dict[str, Any]) -> None:
    data["files"]["/etc/passwd"] = data["files"]["model.onnx"]


def _unlisted_format_file(data: dict[str, Any]) -> None:
    data["formats"]["onnx"]["files"] = ["model.onnx", "elsewhere.onnx"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_escape_file, "must be a plain file name inside the export directory, got '../../x"),
        (_absolute_file, "got '/etc/passwd'"),
        (_unlisted_format_file, "format 'onnx' names files not listed in files: ['elsewhere"),
        (lambda d: d.pop("formats"), "the manifest: 'formats' is a required property"),
        (lambda d: d.update(formats=[]), "formats: must be an object, got []"),
        (lambda d: d.update(format_version=1), "format_version is 1, this zoo reads 2"),
        (lambda d: d.update(raw="yes"), "raw: must be true or false, got 'yes'"),
        (lambda d: d["files"]["model.onnx"].update(sha256="0" * 10), "sha256: must match"),
        (lambda d: d["weights"].update(file="../w.safetensors"), "weights.file: must be 'weights"),
        (lambda d: d["formats"]["onnx"].update(status="maybe"), "status: must be one of 'ok',"),
    ],
    ids=[
        "escaping-path",
        "absolute-path",
        "unlisted-format-file",
        "no-formats",
        "formats-list",
        "old-version",
        "raw-string",
        "bad-digest",
        "weights-elsewhere",
        "bad-status",
    ],
)
@pytest.mark.usefixtures("check_in_this_process")
def test_a_manifest_zoo_did_not_write_is_refused_in_one_line(
    export: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    copy = _tampered(export, tmp_path, change)
    with pytest.raises(ArtifactError) as caught:
        read_manifest(copy)
    assert message in str(caught.value) and str(copy / "manifest.json") in str(caught.value)
    result = CliRunner().invoke(cli, ["export", "--check", str(copy)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "not a zoo manifest" in result.stderr
    assert "Traceback" not in result.output


def test_a_format_must_read_files_the_manifest_hash_checks(export: Path, tmp_path: Path) -> None:
    def renamed(data: dict[str, Any]) -> None:  # claims another file is the ONNX artifact
        data["formats"]["onnx"]["files"] = ["weights.safetensors"]

    copy = _tampered(export, tmp_path, renamed)
    with pytest.raises(ArtifactError, match=r"the onnx format reads .model\.onnx."):
        check_export(copy)


def test_an_unreadable_manifest_is_one_line(export: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"cannot read .*manifest\.json"):
        read_manifest(copy)
    (copy / "manifest.json").write_text("[]")
    with pytest.raises(ArtifactError, match=r"the manifest: must be an object, got \[\]"):
        read_manifest(copy)
