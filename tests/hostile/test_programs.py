"""Hostile programs: an artifact is code (TorchScript, a .pt2 program, an ONNX graph), and an
export may come from anyone. Each case is built the way the attack was: the exported
artifact wrapped or edited to call an operator that touches a file, the manifest rehashed so
that every file matches it. zoo must refuse the program in one line before it runs, and the
file outside the export directory must stay untouched.

The programs are refused by zoo's command line in this process (``zoo_here``; a benchmark's
workers are processes of their own): a program that ran would touch the file all the same.
The endless loop runs the real ``zoo``: only ``--check``'s child process bounds it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from tests.hostile.conftest import Zoo, one_error_line, sha256, zoo
from zoo.plugins.torchscript import quiet_deprecation


def _rehash(directory: Path, manifest: dict[str, Any], name: str) -> None:
    """The manifest says what the tampered file now is: only the program can give it away."""
    entry = manifest["files"][name]
    entry["sha256"] = sha256(directory / name)
    entry["bytes"] = (directory / name).stat().st_size


def _hostile_torchscript(target: Path, *, shared: bool) -> Callable[[Path, dict[str, Any]], None]:
    """model.ts wrapped in a scripted module whose forward maps ``target`` with
    ``torch.from_file`` (``shared``: written back, created if missing) and hides it in its
    output: the outputs stay eager's, so the parity gate alone would pass it."""

    def change(directory: Path, manifest: dict[str, Any]) -> None:
        with quiet_deprecation():
            inner = torch.jit.load(str(directory / "model.ts"))

            class Wrapped(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.inner = inner
                    self.path = str(target)
                    self.shared = shared

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    t = torch.from_file(self.path, shared=self.shared, size=16, dtype=torch.uint8)
                    if self.shared:
                        t.fill_(65)
                    return self.inner(x) + t.float().sum() * 0

            torch.jit.save(torch.jit.script(Wrapped()), str(directory / "model.ts"))
        _rehash(directory, manifest, "model.ts")

    return change


@pytest.mark.parametrize("shared", [True, False], ids=["writes", "reads"])
def test_a_torchscript_program_that_touches_a_file_is_refused_before_it_runs(
    tampered: Callable[..., Path], zoo_here: Zoo, tmp_path: Path, shared: bool
) -> None:
    target = tmp_path / "outside.bin"
    if not shared:
        target.write_bytes(b"secret" * 4)
    before = target.read_bytes() if target.exists() else None
    directory = tampered(_hostile_torchscript(target, shared=shared))
    checked = zoo_here("export", "--check", str(directory))
    assert checked.returncode == 1
    line = one_error_line(checked)
    assert "model.ts: does not load as torchscript" in line
    assert "calls aten::from_file, which zoo does not run" in line
    record = tmp_path / "bench.json"
    zoo_here("bench", "lenet", "--artifacts", str(directory), "--runtime", "torchscript",
        "--batch", "1", "--rounds", "1", "--max-rounds", "1", "--min-time", "0.01",
        "--device", "cpu", "--json", str(record))  # fmt: skip
    (row,) = json.loads(record.read_text())["results"]
    assert row["status"] == "failed"
    assert "calls aten::from_file, which zoo does not run" in row["reason"]
    # Never run: the outside file is as it was (not created, not written).
    assert (target.read_bytes() if target.exists() else None) == before


def test_a_torchscript_archive_that_runs_code_as_it_loads_is_refused(
    tampered: Callable[..., Path], zoo_here: Zoo, tmp_path: Path
) -> None:
    """__setstate__ runs inside torch.jit.load, before any graph can be looked at."""
    target = tmp_path / "outside.bin"

    def change(directory: Path, manifest: dict[str, Any]) -> None:
        class Loader(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.path = str(target)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x

            @torch.jit.export
            def __getstate__(self) -> tuple[str, bool]:
                return (self.path, self.training)

            @torch.jit.export
            def __setstate__(self, state: tuple[str, bool]) -> None:
                self.path = state[0]
                self.training = state[1]
                torch.from_file(self.path, shared=True, size=16, dtype=torch.uint8).fill_(66)

        with quiet_deprecation():
            torch.jit.save(torch.jit.script(Loader()), str(directory / "model.ts"))
        _rehash(directory, manifest, "model.ts")

    directory = tampered(change)
    checked = zoo_here("export", "--check", str(directory))
    assert checked.returncode == 1
    assert "defines __setstate__, code torch.jit.load runs as it loads" in one_error_line(checked)
    assert not target.exists()


def test_zoo_s_own_programs_pass_the_rule(lenet_export: Path) -> None:
    """What zoo exports is what the rule lets through (every model's: tests/export)."""
    from zoo.plugins import pt2, torchscript

    torchscript.load(lenet_export / "model.ts")
    pt2.load(lenet_export / "model.pt2")
    from zoo.plugins.onnx import check_onnx

    check_onnx(lenet_export / "model.onnx")


def test_a_pt2_program_that_calls_a_file_operator_is_refused(
    tampered: Callable[..., Path], zoo_here: Zoo, tmp_path: Path
) -> None:
    """The ExportedProgram's graph edited to hold aten.from_file: the same rule as
    TorchScript's."""
    target = tmp_path / "outside.bin"

    def change(directory: Path, manifest: dict[str, Any]) -> None:
        program = torch.export.load(str(directory / "model.pt2"))
        graph = program.graph_module.graph
        output = next(n for n in graph.nodes if n.op == "output")
        with graph.inserting_before(output):
            node = graph.call_function(
                torch.ops.aten.from_file.default,
                (str(target),),
                {"shared": True, "size": 16, "dtype": torch.uint8},
            )
        fake = next(n.meta["val"] for n in graph.nodes if n.op == "placeholder")
        with fake.fake_mode:  # what torch.export.save's verifier asks of every node
            node.meta["val"] = torch.empty(16, dtype=torch.uint8)
        program.graph_module.recompile()
        torch.export.save(program, str(directory / "model.pt2"))
        _rehash(directory, manifest, "model.pt2")

    directory = tampered(change)
    checked = zoo_here("export", "--check", str(directory))
    assert checked.returncode == 1
    line = one_error_line(checked)
    assert "model.pt2: does not load as pt2" in line
    assert "aten::from_file" in line and "which zoo does not run" in line
    assert not target.exists()


def test_an_onnx_graph_with_an_operator_of_a_custom_domain_is_refused(
    tampered: Callable[..., Path], zoo_here: Zoo
) -> None:
    """ONNX Runtime runs custom domains' operators from native libraries: only the standard
    domains zoo exports (and those a format plugin declares) are run, in every subgraph."""

    def change(directory: Path, manifest: dict[str, Any]) -> None:
        model = onnx.load(str(directory / "model.onnx"))
        node = model.graph.node[-1]
        node.domain = "com.example.evil"
        model.opset_import.append(onnx.helper.make_opsetid("com.example.evil", 1))
        onnx.save(model, str(directory / "model.onnx"))
        _rehash(directory, manifest, "model.onnx")

    directory = tampered(change)
    checked = zoo_here("export", "--check", str(directory))
    assert checked.returncode == 1
    line = one_error_line(checked)
    assert "model.onnx: does not load as onnx" in line
    assert "domain 'com.example.evil'" in line


def _endless_loop(directory: Path, manifest: dict[str, Any]) -> None:
    """model.onnx whose output passes through a standard ``Loop`` of 2^62 iterations that
    adds nothing: every operator is allowed, the outputs are eager's, and it never ends."""
    helper, proto = onnx.helper, onnx.TensorProto
    model = onnx.load(str(directory / "model.onnx"))
    graph = model.graph
    output = graph.output[0].name
    for node in graph.node:  # the last node now writes beside the output
        node.output[:] = [f"{output}_raw" if o == output else o for o in node.output]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v_in"], ["v_out"])],
        "endless_body",
        [helper.make_tensor_value_info("i", proto.INT64, []),
         helper.make_tensor_value_info("cond_in", proto.BOOL, []),
         helper.make_tensor_value_info("v_in", proto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", proto.BOOL, []),
         helper.make_tensor_value_info("v_out", proto.FLOAT, [])],
    )  # fmt: skip
    graph.initializer.extend([
        helper.make_tensor("endless_trips", proto.INT64, [], [2**62]),
        helper.make_tensor("endless_cond", proto.BOOL, [], [True]),
        helper.make_tensor("endless_zero", proto.FLOAT, [], [0.0]),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("Loop", ["endless_trips", "endless_cond", "endless_zero"],
                         ["endless_v"], body=body),
        helper.make_node("Add", [f"{output}_raw", "endless_v"], [output]),
    ])  # fmt: skip
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / "model.onnx"))
    _rehash(directory, manifest, "model.onnx")


def test_an_onnx_loop_that_never_ends_is_stopped_at_the_check_bound(
    tampered: Callable[..., Path],
) -> None:
    """The probe's: a Loop of 2^62 iterations hung --check. The check runs in a child given
    --check-timeout seconds; past it, the artifact running is named and nothing vouched for."""
    directory = tampered(_endless_loop)
    checked = zoo("export", "--check", str(directory), "--check-timeout", "20", timeout=120)
    assert checked.returncode == 1
    line = one_error_line(checked)
    assert f"{directory / 'model.onnx'}: the onnx artifact did not finish its check in 20 s" in line
    assert "parity holds" not in checked.stdout


@pytest.mark.parametrize("gate", [None, {}], ids=["removed", "empty"])
def test_check_refuses_an_ok_artifact_without_its_gate_record(
    tampered: Callable[..., Path], zoo_here: Zoo, gate: dict[str, Any] | None
) -> None:
    """The attack: the fp32 format's parity record removed (or emptied), its artifact
    replaced with 7 bytes of garbage, the manifest rehashed. --check used to say "parity
    holds" without running it."""

    def change(directory: Path, manifest: dict[str, Any]) -> None:
        entry = manifest["formats"]["onnx"]
        if gate is None:
            del entry["parity"]
        else:
            entry["parity"] = gate
        (directory / "model.onnx").write_bytes(b"garbage")
        _rehash(directory, manifest, "model.onnx")

    checked = zoo_here("export", "--check", str(tampered(change)))
    assert checked.returncode == 1
    assert "onnx is marked ok but records no parity gate" in one_error_line(checked)


def test_a_sparse_initializer_that_reads_an_unlisted_file_is_refused(
    tampered: Callable[..., Path], zoo_here: Zoo
) -> None:
    """The attack: a sparse initializer whose values live in ``other.bin``, a file in the
    export directory that the manifest does not list (a hard link to an outside file would
    do): ONNX Runtime read it, and onnx's own walk of a model's tensors skips sparse ones."""

    def change(directory: Path, manifest: dict[str, Any]) -> None:
        model = onnx.load(str(directory / "model.onnx"))
        values = onnx.helper.make_tensor("evil_values", onnx.TensorProto.FLOAT, [1], [0.0])
        values.ClearField("float_data")
        values.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", "other.bin"), ("offset", "0"), ("length", "4")):
            values.external_data.add(key=key, value=value)
        indices = onnx.helper.make_tensor("evil_indices", onnx.TensorProto.INT64, [1], [0])
        model.graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, [4]))
        onnx.save(model, str(directory / "model.onnx"))
        (directory / "other.bin").write_bytes(b"\0" * 16)
        _rehash(directory, manifest, "model.onnx")

    checked = zoo_here("export", "--check", str(tampered(change)))
    assert checked.returncode == 1
    line = one_error_line(checked)
    assert "tensor 'evil_values' is stored in 'other.bin'" in line


@pytest.mark.parametrize(
    ("file", "member"),
    [
        ("model.pt2", "archive/data/weights/model_weights_config.json"),
        ("model.ts", "code/__torch__/bomb.py"),
    ],
    ids=["pt2-json", "torchscript-code"],
)
def test_a_zip_bomb_is_refused_before_anything_inflates_it(
    tampered: Callable[..., Path], zoo_here: Zoo, file: str, member: str
) -> None:
    """The attack: an archive member that inflates to 64 MiB of whitespace from a few tens
    of kilobytes (the probe's inflated to 400 MB; 1.5 GB peak while zoo parsed it)."""
    import zipfile

    def change(directory: Path, manifest: dict[str, Any]) -> None:
        path = directory / file
        with zipfile.ZipFile(path) as source:
            entries = [(i, source.read(i)) for i in source.infolist()]
        prefix = entries[0][0].filename.split("/", 1)[0] + "/"
        name = member if member.startswith("archive/") else prefix + member
        with zipfile.ZipFile(path, "w") as bomb:
            for info, data in entries:
                if info.filename != name:
                    bomb.writestr(info, data)
            bomb.writestr(name, b" " * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
        _rehash(directory, manifest, file)

    directory = tampered(change)
    assert (directory / file).stat().st_size < 2 << 20
    checked = zoo_here("export", "--check", str(directory))
    assert checked.returncode == 1
    line = one_error_line(checked)
    assert f"{file}: does not load as" in line and "inflates" in line
