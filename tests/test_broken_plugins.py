"""Broken plugins of every kind (model, format, runtime, task, dataset), broken every way
(raising in a hook or on import, ``BaseException`` included, registering garbage or a name
taken, defining no hook, killing or hanging the interpreter) are isolated and reported: zoo
carries on, ``zoo plugins`` says what failed and why, ``zoo plugins --isolated`` finds the
ones nothing in-process can catch, and a broken object fails only the work that uses it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ZOO, run_zoo
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
    # Every kind, broken every way: BaseException in the hook, garbage, names taken.
    "zoo_test_model_interrupt": """
        import zoo

        @zoo.hookimpl
        def zoo_register_models(registry):
            raise KeyboardInterrupt("the plugin's own")
    """,
    "zoo_test_model_twice": """
        import zoo
        from torch import nn

        SPEC = zoo.ModelSpec(
            name="twice", builder=nn.Identity, task="block", input=zoo.InputSpec((3,)),
            outputs=(zoo.OutputSpec("out", (3,)),), summary="registered twice")

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register(SPEC)
            registry.register(SPEC)
    """,
    "zoo_test_model_garbage": """
        import zoo

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register("lenet")
    """,
    "zoo_test_format_exit": """
        import sys

        import zoo

        @zoo.hookimpl
        def zoo_register_formats(registry):
            sys.exit(2)
    """,
    "zoo_test_format_class": """
        import zoo

        class Uninstantiated(zoo.Format):
            name = "uninstantiated"
            files = ("model.u",)

            def export(self, request):
                return {}

            def load(self, directory, variant=""):
                raise AssertionError

        @zoo.hookimpl
        def zoo_register_formats(registry):
            registry.register(Uninstantiated)  # the class, not an instance
    """,
    "zoo_test_format_bad_files": """
        import zoo

        class Escaping(zoo.Format):
            name = "escaping"
            files = ("../outside.bin",)

            def export(self, request):
                return {}

            def load(self, directory, variant=""):
                raise AssertionError

        @zoo.hookimpl
        def zoo_register_formats(registry):
            registry.register(Escaping())
    """,
    "zoo_test_runtime_generator_exit": """
        import zoo

        @zoo.hookimpl
        def zoo_register_runtimes(registry):
            raise GeneratorExit
    """,
    "zoo_test_runtime_taken": """
        import zoo

        class Eager(zoo.Runtime):
            name = "eager"
            format = None

            def load(self, source, device, threads):
                raise AssertionError

        @zoo.hookimpl
        def zoo_register_runtimes(registry):
            registry.register(Eager())
    """,
    "zoo_test_task_base_exception": """
        import zoo

        class Stop(BaseException):
            pass

        @zoo.hookimpl
        def zoo_register_tasks(registry):
            raise Stop("neither an Exception nor Python's own")
    """,
    "zoo_test_task_instance": """
        import zoo
        from zoo.plugins.classification import Classification

        @zoo.hookimpl
        def zoo_register_tasks(registry):
            registry.register(Classification())
    """,
    "zoo_test_dataset_interrupt": """
        import zoo

        @zoo.hookimpl
        def zoo_register_datasets(registry):
            raise KeyboardInterrupt
    """,
    "zoo_test_dataset_taken": """
        import zoo

        @zoo.hookimpl
        def zoo_register_datasets(registry):
            registry.register("mnist5k", lambda request: None, "takes a built-in's name")
    """,
    "zoo_test_dataset_garbage": """
        import zoo

        @zoo.hookimpl
        def zoo_register_datasets(registry):
            registry.register("garbage", lambda request: None, ["not", "a", "string"])
    """,
    # Broken on import, or without any hook.
    "zoo_test_import_interrupt": "raise KeyboardInterrupt('on import')\n",
    "zoo_test_import_exit": "raise SystemExit(0)\n",
    "zoo_test_import_reentrant": "import zoo\n\nzoo.list_models()\n",
    "zoo_test_no_hookimpl": """
        def zoo_register_models(registry):
            raise AssertionError("never called: not a hook without @zoo.hookimpl")

        def zoo_register_format(registry):
            raise AssertionError("never called")
    """,
    "zoo_test_printer": """
        import zoo

        print("the printer plugin talks on import")

        @zoo.hookimpl
        def zoo_register_tasks(registry):
            print("and in its hook")
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


@pytest.fixture(scope="module")
def records(site: Path) -> dict[str, dict[str, Any]]:
    """``zoo plugins --json`` of the site, by plugin name."""
    return {r["name"]: r for r in json.loads(run_zoo("plugins", "--json", path=site).stdout)}


def test_broken_registrations_are_recorded_and_skipped_whole(
    site: Path, records: dict[str, dict[str, Any]]
) -> None:
    listed = run_zoo("list", path=site)
    assert listed.returncode == 0 and "lenet" in listed.stdout
    assert "halfmodel" not in listed.stdout  # its other hook failed: nothing of it is kept
    assert "Traceback" not in listed.stderr
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
    assert re.search(r"\nraising_objects +loaded ", table)
    assert re.search(r"\nno_hookimpl +empty ", table)
    assert "\nno_hookimpl (zoo_test_no_hookimpl) registers nothing: it defines no zoo hook" in (
        table
    )
    assert "formats raising, crashing; runtimes unloadable, aborting" in table
    assert "\ndup_format (zoo_test_dup_format) failed: DuplicateNameError" in table
    # zoo's own formats, runtimes and tasks are all still there.
    assert [f["name"] for f in json.loads(run_zoo("formats", "--json", path=site).stdout)] == [
        "onnx",
        "onnx-int8",
        "pt2",
        "pt2-bf16",
        "pt2-fp16",
        "aoti",
        "aoti-int8",
        "aoti-cuda",
        "aoti-cuda-bf16",
        "aoti-cuda-fp16",
        "torchscript",
        "triton",
        "raising",
        "crashing",
    ]
    strict = run_zoo("list", path=site, ZOO_STRICT_PLUGINS="1")
    assert strict.returncode == 1 and strict.stdout == ""
    assert "zoo stops because ZOO_STRICT_PLUGINS=1" in strict.stderr
    assert "skipped" not in strict.stderr


def test_every_kind_broken_every_way_is_recorded_and_zoo_still_works(
    site: Path, records: dict[str, dict[str, Any]]
) -> None:
    # Independent zoo processes, run side by side.
    commands = {
        "models": ("list", "--json"),
        **{kind: (kind, "--json") for kind in ("formats", "runtimes", "tasks", "datasets")},
    }
    with ThreadPoolExecutor(4) as pool:
        runs = pool.map(lambda a: run_zoo(*a, path=site), commands.values())
        done = dict(zip(commands, runs, strict=True))
    expected = {
        "model_interrupt": "KeyboardInterrupt: the plugin's own",
        "model_twice": "DuplicateModelError: model 'twice' from plugin 'model_twice' is already "
        "registered by plugin 'model_twice'",
        "model_garbage": "InvalidSpecError: expected a zoo.ModelSpec instance, got str: 'lenet'",
        "format_exit": "SystemExit: 2",
        "format_class": "InvalidSpecError: expected a zoo.Format instance, got ABCMeta",
        "format_bad_files": "InvalidSpecError: format 'escaping': files must be a non-empty "
        "tuple of plain file names",
        "runtime_generator_exit": "GeneratorExit",
        "runtime_taken": "DuplicateNameError: runtime 'eager' from plugin 'runtime_taken' is "
        "already registered by plugin 'eager'",
        "task_base_exception": "Stop: neither an Exception nor Python's own",
        "task_instance": "InvalidSpecError: expected a zoo.Task subclass (the class, not an "
        "instance), got Classification",
        "dataset_interrupt": "KeyboardInterrupt",
        "dataset_taken": "DuplicateNameError: dataset 'mnist5k' from plugin 'dataset_taken' is "
        "already registered by plugin 'datasets'",
        "dataset_garbage": "InvalidSpecError: dataset 'garbage': description must be a string",
        "import_interrupt": "import failed: KeyboardInterrupt: on import",
        "import_exit": "import failed: SystemExit: 0",
        "import_reentrant": "import failed: PluginError: a plugin asked for zoo's registries "
        "while zoo was loading plugins",
    }
    for name, error in expected.items():
        assert records[name]["status"] == "failed", name
        assert (records[name]["error"] or "").startswith(error), records[name]["error"]
    empty = records["no_hookimpl"]
    assert (empty["status"], empty["error"]) == ("empty", None)
    assert empty["warning"] == (
        "it defines no zoo hook: zoo_register_format is no hook: did you mean "
        "zoo_register_formats?; zoo_register_models is not marked @zoo.hookimpl"
    )
    # Every listing works and holds zoo's own, and nothing of a broken plugin.
    listed = done["models"]
    assert listed.returncode == 0, listed.stderr
    models = [m["name"] for m in json.loads(listed.stdout)]
    assert "lenet" in models and "twice" not in models
    # What a plugin prints goes to stderr, and stdout stays JSON.
    assert "the printer plugin talks on import\nand in its hook\n" in listed.stderr
    assert "plugin 'no_hookimpl' (zoo-broken-kinds 0.0.1) registers nothing" in listed.stderr
    assert "Traceback" not in listed.stderr and "aborted" not in listed.stderr
    for kind, builtin, broken in [
        ("formats", "onnx", {"uninstantiated", "escaping"}),
        ("runtimes", "eager", set()),
        ("tasks", "classification", set()),
        ("datasets", "mnist5k", {"garbage"}),
    ]:
        assert done[kind].returncode == 0, done[kind].stderr
        entries = json.loads(done[kind].stdout)
        names = {e["name"] for e in entries}
        assert builtin in names and not names & broken, kind
        plugins = {e["plugin"] for e in entries}
        assert not plugins & set(expected), kind


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
    rows = {r.runtime: r for r in load_run(out).rows}
    assert rows["eager"].status == "ok"
    assert rows["unloadable"].status == "failed"
    # The row names the artifact the runtime could not load, and why.
    assert rows["unloadable"].reason.endswith(
        "/model.onnx: does not load in unloadable: RuntimeError: cannot load today"
    )
    assert rows["aborting"].status == "failed"
    assert rows["aborting"].reason.startswith("crashed (killed by SIGABRT)")


FATAL = {
    "zoo_test_exits": "import os\n\nos._exit(0)\n",
    "zoo_test_killed": "import os, signal\n\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "zoo_test_hangs": "import time\n\ntime.sleep(3600)\n",
    "zoo_test_interrupts": "raise KeyboardInterrupt\n",
    "zoo_test_empty": "VERSION = 1\n",
    # Survives everything an isolated load must shrug off: output on stdout (part of a line,
    # straight to the descriptor), a read of stdin, a non-daemon thread, an atexit handler.
    "zoo_test_noisy": """
        import atexit, os, sys, threading, time

        import zoo

        sys.stdout.write("no newline")
        os.write(1, b"straight to fd 1")
        try:
            input()
        except EOFError:
            pass
        threading.Thread(target=time.sleep, args=(3600,)).start()
        atexit.register(print, '{"not": "the result"}')

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register(zoo.ModelSpec(
                name="noisy", builder=lambda: None, task="block", input=zoo.InputSpec((3,)),
                outputs=(zoo.OutputSpec("out", (3,)),), summary="loads fine, noisily"))
    """,
}


@pytest.fixture
def fatal(make_dist: Callable[..., Path]) -> Path:
    return make_dist("zoo-fatal", "1.0", FATAL, {m.removeprefix("zoo_test_"): m for m in FATAL})


def test_isolated_loading_finds_the_plugins_that_kill_or_hang_the_interpreter(
    fatal: Path,
) -> None:
    # zoo's own plugins (distribution "zoo") are skipped to keep this quick.
    found = run_zoo("plugins", "--isolated", "--json", path=fatal, ZOO_DISABLE_PLUGINS="zoo,hangs")
    assert found.returncode == 1
    records = {r["name"]: r for r in json.loads(found.stdout)}
    assert {records[n]["status"] for n in ("lenet", "onnx", "hangs")} == {"disabled"}
    assert records["exits"]["status"] == "crashed"
    assert records["exits"]["error"] == "crashed (exit status 0): no message"
    assert records["killed"]["status"] == "crashed"
    assert records["killed"]["error"] == "crashed (killed by SIGKILL): no message"
    assert records["interrupts"]["status"] == "failed"
    assert records["interrupts"]["error"] == "import failed: KeyboardInterrupt"
    assert (records["empty"]["status"], records["empty"]["error"]) == ("empty", None)
    assert (records["noisy"]["status"], records["noisy"]["models"]) == ("loaded", ["noisy"])
    assert found.stderr == (
        "zoo: error: 3 of 20 plugins broken: exits (crashed), interrupts (failed), "
        "killed (crashed); uninstall or fix them, or set "
        "ZOO_DISABLE_PLUGINS=exits,interrupts,killed to skip them\n"
    )
    # zoo's own load together, in one child.
    builtins = run_zoo(
        "plugins", "--isolated", "--json", path=fatal, ZOO_DISABLE_PLUGINS="zoo-fatal"
    )
    assert builtins.returncode == 0, builtins.stderr
    records = {r["name"]: r for r in json.loads(builtins.stdout)}
    assert {r["status"] for r in records.values() if r["builtin"]} == {"loaded"}
    assert records["onnx"]["formats"] == ["onnx", "onnx-int8"]
    assert records["lenet"]["models"] == ["lenet"]
    everything_else = "zoo,exits,interrupts,killed,empty,noisy"
    hung = run_zoo(
        "plugins", "--isolated", "--timeout", "2", path=fatal, ZOO_DISABLE_PLUGINS=everything_else
    )
    assert hung.returncode == 1
    assert re.search(r"\nhangs +hung +zoo-fatal ", hung.stdout)
    assert "\nhangs (zoo_test_hangs) hung: did not finish in 2 s\n" in hung.stdout
    strict = run_zoo(
        "plugins",
        "--isolated",
        "--json",
        path=fatal,
        ZOO_DISABLE_PLUGINS="zoo,exits,interrupts,killed,hangs,noisy",
        ZOO_STRICT_PLUGINS="1",
    )
    assert strict.returncode == 1 and "empty (failed)" in strict.stderr
    (empty,) = [r for r in json.loads(strict.stdout) if r["name"] == "empty"]
    assert (empty["status"], empty["warning"]) == ("failed", None)
    assert empty["error"].startswith("registers nothing: it defines no zoo hook (a function")
    refused = run_zoo("plugins", "--isolated", "--timeout", "nan", path=fatal)
    assert refused.returncode == 2 and "--timeout" in refused.stderr
    # In-process, the first of them ends zoo with nothing said: why --isolated exists...
    silent = run_zoo("list", path=fatal, ZOO_DISABLE_PLUGINS="hangs,empty")
    assert (silent.returncode, silent.stdout, silent.stderr) == (0, "", "")
    # ...and with what it suggested disabled, zoo works.
    listed = run_zoo(
        "list", "lenet", path=fatal, ZOO_DISABLE_PLUGINS="hangs,noisy,exits,interrupts,killed"
    )
    assert listed.returncode == 0 and listed.stdout.startswith("NAME")
    assert "plugin 'empty' (zoo-fatal 1.0) registers nothing" in listed.stderr


SLOW_PLUGIN = """
    import os, pathlib, time

    import zoo

    def wait(seconds):
        pathlib.Path(os.environ["ZOO_TEST_READY"]).touch()
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            pass  # swallowed: zoo must abort all the same

    if os.environ["ZOO_TEST_WHERE"] == "import":
        wait(float(os.environ["ZOO_TEST_SECONDS"]))

    @zoo.hookimpl
    def zoo_register_models(registry):
        if os.environ["ZOO_TEST_WHERE"] == "hook":
            wait(float(os.environ["ZOO_TEST_SECONDS"]))
"""


@pytest.mark.parametrize(
    ("where", "seconds", "presses"),
    [
        ("hook", 30, 1),  # raised in the hook, swallowed by the plugin: zoo aborts after it
        ("import", 2, 1),  # held until the import is done (torch's numpy import), then aborts
        ("import", 30, 2),  # the user's second Ctrl-C during an import aborts at once
    ],
)
def test_a_real_ctrl_c_while_plugins_load_aborts_zoo(
    make_dist: Callable[..., Path], where: str, seconds: int, presses: int
) -> None:
    """The user's Ctrl-C still stops zoo, even when the plugin it lands in swallows it."""
    site = make_dist("zoo-slow", "1.0", {"zoo_test_slow": SLOW_PLUGIN}, {"slow": "zoo_test_slow"})
    ready = site / "ready"
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "ZOO_TEST_READY": str(ready),
        "ZOO_TEST_WHERE": where,
        "ZOO_TEST_SECONDS": str(seconds),
    }
    env.pop("ZOO_DISABLE_PLUGINS", None)
    zoo = subprocess.Popen(
        [ZOO, "list", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python handles SIGINT only where it is not ignored (a background job's is).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    while not ready.exists() and zoo.poll() is None:
        time.sleep(0.05)
    for _ in range(presses):
        zoo.send_signal(signal.SIGINT)
        time.sleep(0.3)
    # Well before the plugin's 30 s sleep would end (a lost Ctrl-C shows as the timeout).
    out, err = zoo.communicate(timeout=20)
    assert (zoo.returncode, out, err.strip()) == (130, "", "zoo: aborted")
