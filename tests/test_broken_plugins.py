"""Broken plugins of every kind (format, runtime, task, dataset) are isolated and reported as
broken model plugins are: zoo carries on, ``zoo plugins`` says what failed and why, and a
broken object fails only the work that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_zoo
from zoo.bench.results import load_run

PLUGINS = {
    # Registration fails: the whole plugin is skipped, zoo carries on.
    "zoo_test_dup_format": """
        import zoo
        from zoo.plugins.onnx import OnnxFormat

        @zoo.hookimpl
        def zoo_register_formats(registry):
            registry.register(OnnxFormat())  # "onnx" is zoo's
    """,
    "zoo_test_bad_task": """
        import zoo

        class NoSuchMonitor(zoo.Task):
            name = "badtask"
            metrics = {"loss": False}
            monitor = "accuracy"

            def loss(self, outputs, x, y):
                return outputs.sum()

            def new_metrics(self, run):
                raise NotImplementedError

        @zoo.hookimpl
        def zoo_register_tasks(registry):
            registry.register(NoSuchMonitor)
    """,
    "zoo_test_not_a_runtime": """
        import zoo

        @zoo.hookimpl
        def zoo_register_runtimes(registry):
            registry.register(object())
    """,
    "zoo_test_bad_dataset": """
        import zoo

        @zoo.hookimpl
        def zoo_register_datasets(registry):
            registry.register("Bad Name", lambda request: None, "a malformed name")
    """,
    "zoo_test_half_plugin": """
        import zoo
        from torch import nn

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register(zoo.ModelSpec(
                name="halfmodel", builder=nn.Identity, task="block",
                input=zoo.InputSpec((3,)), outputs=(zoo.OutputSpec("out", (3,)),),
                summary="registered by a plugin whose other hook raises"))

        @zoo.hookimpl
        def zoo_register_formats(registry):
            raise RuntimeError("formats are not ready")
    """,
    # Registration succeeds: the object fails when it is used, and only that work fails.
    "zoo_test_raising_objects": """
        import os

        import zoo

        class Raising(zoo.Format):
            name = "raising"
            files = ("model.raise",)
            description = "a format whose export raises"

            def export(self, request):
                raise RuntimeError("the exporter crashed")

            def load(self, directory, variant=""):
                raise AssertionError("never loaded")

        class Unloadable(zoo.Runtime):
            name = "unloadable"
            format = "onnx"
            description = "a runtime whose load raises"

            def load(self, source, device, threads):
                raise RuntimeError("cannot load today")

        class Crashing(zoo.Format):
            # Writes its artifact, then kills the process that loads it (native code gone
            # wrong): isolated, so only its gate's child process dies.

            name = "crashing"
            files = ("model.crash",)
            isolated = True

            def export(self, request):
                request.path(self.files[0]).write_bytes(b"not a model")
                return {}

            def load(self, directory, variant=""):
                os.abort()

        class Aborting(zoo.Runtime):
            name = "aborting"
            format = None

            def load(self, source, device, threads):
                os.abort()

        @zoo.hookimpl
        def zoo_register_formats(registry):
            registry.register(Raising())
            registry.register(Crashing())

        @zoo.hookimpl
        def zoo_register_runtimes(registry):
            registry.register(Unloadable())
            registry.register(Aborting())
    """,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import textwrap

    root = tmp_path_factory.mktemp("broken-site")
    for module, source in PLUGINS.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / "zoo_broken_kinds-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: zoo-broken-kinds\nVersion: 0.0.1\n"
    )
    lines = "\n".join(f"{m.removeprefix('zoo_test_')} = {m}" for m in PLUGINS)
    (info / "entry_points.txt").write_text(f"[zoo]\n{lines}\n")
    return root


def test_broken_registrations_are_recorded_and_skipped_whole(site: Path) -> None:
    listed = run_zoo("list", path=site)
    assert listed.returncode == 0 and "lenet" in listed.stdout
    assert "halfmodel" not in listed.stdout  # its other hook failed: nothing of it is kept
    assert "Traceback" not in listed.stderr
    records = {r["name"]: r for r in json.loads(run_zoo("plugins", "--json", path=site).stdout)}
    expected = {
        "dup_format": "DuplicateNameError: format 'onnx' from plugin 'dup_format' is already "
        "registered by plugin 'onnx'; rename one of them",
        "bad_task": "InvalidSpecError: task 'badtask': monitor 'accuracy' must be one of its "
        "metrics ['loss']",
        "not_a_runtime": "InvalidSpecError: expected a zoo.Runtime instance, got object",
        "bad_dataset": "InvalidSpecError: dataset name 'Bad Name' is invalid",
        "half_plugin": "RuntimeError: formats are not ready",
    }
    for name, error in expected.items():
        assert records[name]["status"] == "failed", name
        assert (records[name]["error"] or "").startswith(error), records[name]["error"]
        assert records[name]["models"] == records[name]["formats"] == []
        assert f"plugin {name!r} (zoo-broken-kinds 0.0.1) failed and was skipped" in listed.stderr
    assert records["raising_objects"]["status"] == "loaded"
    table = run_zoo("plugins", path=site).stdout
    assert "raising_objects  loaded" in table
    assert "formats raising, crashing; runtimes unloadable, aborting" in table
    assert "\ndup_format (zoo_test_dup_format) failed: DuplicateNameError" in table
    # zoo's own formats, runtimes and tasks are all still there.
    assert [f["name"] for f in json.loads(run_zoo("formats", "--json", path=site).stdout)] == [
        "onnx",
        "pt2",
        "aoti",
        "torchscript",
        "raising",
        "crashing",
    ]
    strict = run_zoo("list", path=site, ZOO_STRICT_PLUGINS="1")
    assert strict.returncode == 1 and "ZOO_STRICT_PLUGINS=1" in strict.stderr


def test_a_format_whose_export_raises_or_whose_runtime_crashes_fails_alone(
    site: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x"
    done = run_zoo(
        "export", "lenet", "--format", "onnx,raising,crashing", "--out", str(out), path=site
    )
    assert done.returncode == 1
    assert "zoo: raising: failed: RuntimeError: the exporter crashed" in done.stderr
    assert "zoo: crashing: failed: the crashing runtime crashed (killed by SIGABRT)" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["formats"]["onnx"]["status"] == "ok"
    assert manifest["formats"]["raising"]["status"] == "failed"
    assert manifest["formats"]["crashing"]["status"] == "failed"
    assert not (out / "model.raise").exists() and not (out / "model.crash").exists()


def test_a_runtime_whose_load_raises_or_crashes_is_a_failed_row(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    done = run_zoo(
        "bench",
        "lenet",
        "--runtime",
        "eager,unloadable,aborting",
        "--batch",
        "1",
        "--min-time",
        "0.02",
        "--min-iters",
        "3",
        "--warmup",
        "1",
        "--json",
        str(out),
        path=site,
        ZOO_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert done.returncode == 0, done.stderr
    rows = {r.runtime: r for r in load_run(out).rows}
    assert rows["eager"].status == "ok"
    assert rows["unloadable"].status == "failed"
    assert rows["unloadable"].reason == "RuntimeError: cannot load today"
    assert rows["aborting"].status == "failed"
    assert rows["aborting"].reason.startswith("crashed (killed by SIGABRT)")
