"""Hostile and malformed export directories, through the real ``zoo export --check`` and
``zoo bench --artifacts``: each is refused in one line naming the manifest (or the file) and
the entry, with exit 1, and nothing outside the directory is read or written.

"Not read" is checked with FIFOs: every outside file a hostile manifest points at is a named
pipe without a writer, so a zoo that opened it would hang until the test's timeout (the real
``zoo``) or be found opening it (``zoo_here``, zoo's command line in this process).

Each case runs through zoo's command line in this process, except those of ``END_TO_END``,
which run the real ``zoo`` (and ``--check``'s child process): what costs the time of a case
is starting the processes, and every refusal of a case happens in the same code either way."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from tests.hostile.conftest import Tamper, Zoo, one_error_line, relist, snapshot, zoo


def _outside(directory: Path, name: str = "model.onnx") -> Path:
    """A FIFO outside the export directory (beside it): reading it would block forever."""
    target = directory.parent / "outside" / name
    target.parent.mkdir(exist_ok=True)
    os.mkfifo(target)
    return target


def escaping_format_file(d: Path, m: dict[str, Any]) -> None:
    _outside(d)
    m["files"]["../outside/model.onnx"] = m["files"].pop("model.onnx")
    m["formats"]["onnx"]["files"] = ["../outside/model.onnx"]


def absolute_format_file(d: Path, m: dict[str, Any]) -> None:
    target = _outside(d)
    m["files"][str(target)] = m["files"]["model.onnx"]
    m["formats"]["onnx"]["files"] = [str(target)]


def escaping_listed_file(d: Path, m: dict[str, Any]) -> None:  # a hash oracle for any file
    _outside(d, "passwd")
    m["files"]["../../../../" + str(d.parent / "outside" / "passwd")] = m["files"]["model.ts"]


def unlisted_format_file(d: Path, m: dict[str, Any]) -> None:
    m["formats"]["onnx"]["files"] = ["model.onnx", "model.onnx.data"]


def hash_differs(d: Path, m: dict[str, Any]) -> None:  # the same size: only the hash tells
    data = bytearray((d / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))


def size_differs(d: Path, m: dict[str, Any]) -> None:  # the true hash, another size
    m["files"]["model.onnx"]["bytes"] += 1


def size_beyond_any_file(d: Path, m: dict[str, Any]) -> None:
    m["files"]["model.onnx"]["bytes"] = 10**400


def atol_infinite(d: Path, m: dict[str, Any]) -> None:  # the gate would pass any output
    m["formats"]["onnx"]["parity"]["atol"] = float("inf")  # json.dumps writes Infinity


def input_shape_huge(d: Path, m: dict[str, Any]) -> None:  # zoo makes inputs of this shape
    m["inputs"][0]["shape"] = ["batch", 10**30, 28, 1]


def input_shape_negative(d: Path, m: dict[str, Any]) -> None:
    m["inputs"][0]["shape"] = ["batch", -5, 28, 1]


def input_elements_beyond_any_sample(d: Path, m: dict[str, Any]) -> None:  # each size allowed
    m["inputs"][0]["shape"] = ["batch", 2**20, 2**20, 1]


def dtype_object(d: Path, m: dict[str, Any]) -> None:
    m["inputs"][0]["dtype"] = "object"


def postprocess_evil(d: Path, m: dict[str, Any]) -> None:
    m["postprocess"] = {"kind": "evil", "k": 10**100}


def model_args_huge(d: Path, m: dict[str, Any]) -> None:  # eager rebuilds the model with them
    m["model_args"] = {"num_classes": 10**30}


def garbage_weights(d: Path, m: dict[str, Any]) -> None:
    (d / "weights.safetensors").write_bytes(b"garbage " * 64)
    relist(d, m, "weights.safetensors")


def weights_of_another_model(d: Path, m: dict[str, Any]) -> None:  # a true safetensors file
    import torch
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(2, 2)}, str(d / "weights.safetensors"))
    relist(d, m, "weights.safetensors")


def artifact_links_outside(d: Path, m: dict[str, Any]) -> None:
    target = _outside(d)
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(target)


def unlisted_link_outside(d: Path, m: dict[str, Any]) -> None:  # what ORT would read beside
    (d / "model.onnx.data").symlink_to(_outside(d, "data"))


def unlisted_file_a_format_reads(d: Path, m: dict[str, Any]) -> None:
    (d / "model.onnx.data").write_bytes(b"\0" * 64)


def manifest_links_to_a_device(d: Path, m: dict[str, Any]) -> None:
    (d / "manifest.json").unlink()
    (d / "manifest.json").symlink_to("/dev/zero")


def manifest_is_a_fifo(d: Path, m: dict[str, Any]) -> None:
    (d / "manifest.json").unlink()
    os.mkfifo(d / "manifest.json")


def manifest_is_huge(d: Path, m: dict[str, Any]) -> None:
    with open(d / "manifest.json", "r+b") as handle:
        handle.truncate(64 * 2**20)  # sparse: costs no disk


def formats_missing(d: Path, m: dict[str, Any]) -> None:
    m.pop("formats")


def format_entry_a_list(d: Path, m: dict[str, Any]) -> None:
    m["formats"]["onnx"] = []


def manifest_a_list(d: Path, m: dict[str, Any]) -> None:
    (d / "manifest.json").write_text("[1, 2]")


def files_entry_wrong_type(d: Path, m: dict[str, Any]) -> None:
    m["files"]["model.onnx"]["bytes"] = "many"


def onnx_weights_elsewhere(d: Path, m: dict[str, Any]) -> None:
    # ONNX Runtime reads external data anywhere inside the model's directory: here an
    # initializer stored in weights.safetensors, a listed file the manifest never meant.
    model = onnx.load(str(d / "model.onnx"))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "weights.safetensors"), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(d / "model.onnx"))
    relist(d, m, "model.onnx")


def int8_weights_elsewhere(d: Path, m: dict[str, Any]) -> None:
    # The same, in an int8 variant's file: zoo writes model.int8.onnx whole, no external data.
    fp32 = (d / "model.onnx").read_bytes()
    onnx_weights_elsewhere(d, m)
    (d / "model.onnx").rename(d / "model.int8.onnx")
    (d / "model.onnx").write_bytes(fp32)
    relist(d, m, "model.onnx")
    accuracy = {
        **dict(dataset="digits", samples=179, metric="accuracy", higher_is_better=True),
        **dict(value=0.9, eager=0.9, drop=0.0, max_drop=0.5, agreement=1.0, max_abs_diff=0.1),
        **dict(precision="int8", passed=True),
    }
    m["formats"]["onnx-int8"] = {
        **m["formats"]["onnx"],
        "files": ["model.int8.onnx"],
        "precision": "int8",
        "accuracy": accuracy,
    }
    relist(d, m, "model.int8.onnx")


def labels_misfit(d: Path, m: dict[str, Any]) -> None:  # zoo predict would misname classes
    m["labels"] = {"dataset": "digits", "classes": ["a", "b", "c"], "vocabulary": None}


def labels_not_names(d: Path, m: dict[str, Any]) -> None:
    m["labels"] = {"dataset": "digits", "classes": list(range(10))}


CASES: list[tuple[Tamper, str, str]] = [
    # (the change, the entry the message names, what it says about it)
    (escaping_format_file, "'../outside/model.onnx'", "must be a plain file name inside"),
    (absolute_format_file, "outside/model.onnx'", "must be a plain file name inside"),
    (escaping_listed_file, "outside/passwd'", "must be a plain file name inside"),
    (unlisted_format_file, "'onnx' names files not listed in files", "model.onnx.data"),
    (hash_differs, "model.onnx:", "sha256 does not match the manifest"),
    (size_differs, "model.onnx:", "bytes, the manifest says"),
    (size_beyond_any_file, "files.model.onnx.bytes:", "must be at most 9007199254740991"),
    (atol_infinite, "formats.onnx.parity.atol:", "must be a finite number, got inf"),
    (input_shape_huge, "inputs.0.shape.1:", "must be at most 1048576, got an integer of 31"),
    (input_shape_negative, "inputs.0.shape.1:", "must be at least 1, got -5"),
    (input_elements_beyond_any_sample, "shape", "268,435,456 elements a sample at most"),
    (dtype_object, "inputs.0.dtype:", "got 'object'"),
    (postprocess_evil, "postprocess.k", "must be at most 65536"),
    (model_args_huge, "model_args.num_classes:", "must be at most 9007199254740991"),
    (garbage_weights, "weights.safetensors:", "not a safetensors file of weights"),
    (weights_of_another_model, "weights.safetensors:", "not the weights of lenet {} (missing"),
    (artifact_links_outside, "model.onnx:", "is a symbolic link"),
    (unlisted_link_outside, "model.onnx.data:", "a symbolic link in the export directory"),
    (unlisted_file_a_format_reads, "formats.onnx:", "would read 'model.onnx.data'"),
    (manifest_links_to_a_device, "manifest.json", "is a symbolic link"),
    (manifest_is_a_fifo, "manifest.json", "is not a regular file"),
    (manifest_is_huge, "manifest.json", "more than the 16,777,216 zoo reads"),
    (formats_missing, "the manifest:", "'formats' is a required property"),
    (format_entry_a_list, "formats.onnx:", "must be an object, got []"),
    (manifest_a_list, "the manifest:", "must be an object, got [1, 2]"),
    (files_entry_wrong_type, "files.model.onnx.bytes:", "must be an integer, got 'many'"),
    (onnx_weights_elsewhere, "model.onnx", "weights of model.onnx only from model.onnx.data"),
    (labels_misfit, "manifest.json", "labels.classes lists 3 classes for 10 scores"),
    (labels_not_names, "labels.classes.0:", "must be a string, got 0"),
]
IDS = [change.__name__ for change, _, _ in CASES]
#: Found by zoo bench only: zoo export --check reads an int8 file after its gate data.
BENCH_CASES = [
    *CASES,
    (int8_weights_elsewhere, "model.int8.onnx:", "weights of model.int8.onnx from the file only"),
]
#: The cases run by the real ``zoo`` command: one refused as it reads the manifest (a FIFO in
#: its place), one refused for an entry that points at a FIFO outside the directory.
END_TO_END = (manifest_is_a_fifo, escaping_format_file)


@pytest.mark.parametrize(("change", "entry", "problem"), CASES, ids=IDS)
def test_export_check_refuses_it_in_one_line(
    tampered: Callable[[Tamper], Path], zoo_here: Zoo, change: Tamper, entry: str, problem: str
) -> None:
    directory = tampered(change)
    before = snapshot(directory.parent)
    run = zoo if change in END_TO_END else zoo_here
    result = run("export", "--check", str(directory))
    assert result.returncode == 1, result.stdout + result.stderr
    line = one_error_line(result)
    assert str(directory) in line and entry in line and problem in line, line
    assert "parity holds" not in result.stdout
    assert snapshot(directory.parent) == before  # nothing written, inside or beside


@pytest.mark.parametrize(
    ("change", "entry", "problem"), BENCH_CASES, ids=[c.__name__ for c, _, _ in BENCH_CASES]
)
def test_bench_refuses_it_before_measuring_anything(
    tampered: Callable[[Tamper], Path], zoo_here: Zoo, change: Tamper, entry: str, problem: str
) -> None:
    directory = tampered(change)
    before = snapshot(directory.parent)
    run = zoo if change in END_TO_END else zoo_here
    result = run("bench", "lenet", "--artifacts", str(directory), "--runtime", "onnxruntime")
    assert result.returncode == 1, result.stdout + result.stderr
    line = one_error_line(result)
    assert entry in line and problem in line, line
    assert "ceiling" not in result.stderr  # validated before the matmul ceiling
    assert snapshot(directory.parent) == before


def _garbage(name: str) -> Tamper:
    def change(d: Path, m: dict[str, Any]) -> None:
        if name == "model.aoti.pt2":  # an aoti entry like the others (no compile needed)
            m["formats"]["aoti"] = {**m["formats"]["pt2"], "files": [name]}
        (d / name).write_bytes(b"garbage " * 64)
        relist(d, m, name)

    change.__name__ = f"garbage {name}"
    return change


GARBAGE = {
    "onnx": ("model.onnx", "Error parsing message with type 'onnx.ModelProto'"),
    "torchscript": ("model.ts", "BadZipFile: File is not a zip file"),  # zoo reads its code first
    "pt2": ("model.pt2", "BadZipFile: File is not a zip file"),
    "aoti": ("model.aoti.pt2", "Failed to initialize zip archive"),
}


@pytest.mark.parametrize("fmt", list(GARBAGE))
def test_a_garbage_artifact_with_a_true_hash_is_one_line_naming_it(
    tampered: Callable[[Tamper], Path], zoo_here: Zoo, fmt: str
) -> None:
    name, why = GARBAGE[fmt]
    directory = tampered(_garbage(name))
    result = zoo_here("export", "--check", str(directory))
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"{directory / name}: does not load as {fmt}: " in line and why in line, line


def test_a_garbage_parity_fixture_is_one_line_naming_it(
    tampered: Callable[[Tamper], Path], zoo_here: Zoo
) -> None:
    directory = tampered(_garbage("parity.safetensors"))
    line = one_error_line(zoo_here("export", "--check", str(directory)))
    assert f"{directory / 'parity.safetensors'}: not this export's parity fixture" in line


def test_bench_fails_every_garbage_artifact_alone_and_exits_1(
    tampered: Callable[[Tamper], Path],
) -> None:
    def all_garbage(d: Path, m: dict[str, Any]) -> None:
        for name, _ in GARBAGE.values():
            _garbage(name)(d, m)

    directory = tampered(all_garbage)
    result = zoo(
        "bench",
        "lenet",
        "--artifacts",
        str(directory),
        "--runtime",
        "onnxruntime,torchscript,pt2,aoti",
        "--batch",
        "1",
        "--min-time",
        "0",
        "--min-iters",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--max-rounds",
        "1",
        "--json",
        str(directory.parent / "run.json"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == (
        "zoo: no runtime was measured: 4 failed (aoti, onnxruntime, pt2, torchscript)"
    )
    rows = {
        r["runtime"]: r for r in json.loads((directory.parent / "run.json").read_text())["results"]
    }
    for runtime, (name, why) in zip(
        ["onnxruntime", "torchscript", "pt2", "aoti"], GARBAGE.values(), strict=True
    ):
        reason = rows[runtime]["reason"]
        why = "Protobuf parsing failed" if runtime == "onnxruntime" else why  # ORT's own words
        assert reason.startswith(f"{directory / name}: does not load in {runtime}: "), reason
        assert why in reason and "\n" not in reason
    shutil.rmtree(directory.parent / "outside", ignore_errors=True)


class _Payload:
    """Unpickled without ``weights_only``, runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _pickling_pt2(part: str, marker: Path) -> Tamper:
    """A model.pt2 whose ``part`` torch.export.load would unpickle in full (listed with its
    true hash): the sample inputs as a pickle, or a weight marked ``use_pickle``."""

    def change(d: Path, m: dict[str, Any]) -> None:
        evil = pickle.dumps(_Payload(marker))
        source, target = d / "model.pt2", d / "evil.pt2"
        with zipfile.ZipFile(source) as zin:
            entries = {name: zin.read(name) for name in zin.namelist()}
        extra: list[tuple[str, bytes]] = []
        for name, data in list(entries.items()):
            if part == "twice" and name.endswith("_weights_config.json"):
                # An evil copy first, the true one last: zipfile reads the last, torch's
                # reader may read the first.
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                extra.append((name, json.dumps(config).encode()))
            if part == "aoti" and name.endswith("/archive_format"):
                root = name.split("/")[0]
                extra.append((f"{root}/data/aotinductor/model/model.so", b"\x7fELF not really"))
            if part == "sample inputs" and name.endswith("sample_inputs/model.pt"):
                entries[name] = evil
            if part == "weights" and name.endswith("_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                entries[name] = json.dumps(config).encode()
                entries[name.rsplit("/", 1)[0] + "/" + first["path_name"]] = evil
        with zipfile.ZipFile(target, "w") as zout, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": on purpose
            for name, data in extra:
                zout.writestr(name, data)
            for name, data in entries.items():
                zout.writestr(name, data)
        target.replace(source)
        relist(d, m, "model.pt2")

    return change


@pytest.mark.parametrize(
    ("part", "why"),
    [
        ("sample inputs", "pickle zoo never loads"),
        ("weights", "which zoo never loads"),
        ("twice", "/data/weights/model_weights_config.json' twice"),
        ("aoti", "it holds an AOTInductor library (native code)"),
    ],
)
def test_a_pt2_that_torch_would_unpickle_is_never_loaded(
    tampered: Callable[[Tamper], Path], zoo_here: Zoo, tmp_path: Path, part: str, why: str
) -> None:
    """In this process, whose benchmark's workers are processes of their own: the payload
    would run in either, and the marker tells."""
    marker = tmp_path / "PWNED"
    directory = tampered(_pickling_pt2(part, marker))
    result = zoo_here("export", "--check", str(directory))
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"{directory / 'model.pt2'}: does not load as pt2: ValueError: " in line, line
    assert why in line, line
    result = zoo_here(
        "bench", "lenet", "--artifacts", str(directory), "--runtime", "pt2", "--batch", "1"
    )
    assert result.returncode == 1 and why in " ".join(result.stdout.split())  # table wraps
    assert not marker.exists()  # the payload never ran
