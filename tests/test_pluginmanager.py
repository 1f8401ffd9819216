from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest

import zoo
from tests.helpers import tiny_spec
from zoo import _pluginmanager
from zoo._pluginmanager import ZooPlugins


class GoodPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, registry):
        registry.register(tiny_spec("good_a"))
        registry.register(tiny_spec("good_b"))


class RaisingPlugin:
    """Registers one model, then raises: the model must not stay registered."""

    @zoo.hookimpl
    def zoo_register_models(self, registry):
        registry.register(tiny_spec("half_done"))
        raise RuntimeError("boom in the hook")


class BadSpecPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, registry):
        registry.register({"name": "not-a-spec"})


class MisspelledPlugin:
    @zoo.hookimpl
    def zoo_register_model(self, registry):  # missing the final "s"
        registry.register(tiny_spec("never"))


class WrongArgsPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, registry, extra):
        raise AssertionError("never called")


def _plugins(*plugins: object, disabled: tuple[str, ...] = ()) -> ZooPlugins:
    manager = ZooPlugins(strict=False, disabled=disabled)
    for plugin in plugins:
        manager.add_plugin(plugin, name=type(plugin).__name__)
    return manager


def test_good_plugin_registers_its_models_and_hooks() -> None:
    manager = _plugins(GoodPlugin())
    (record,) = manager.records
    assert record.status == "loaded"
    assert record.models == ["good_a", "good_b"]
    assert record.hooks == ["zoo_register_models"]
    assert manager.models.get("good_a").plugin == "GoodPlugin"


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        (RaisingPlugin(), "RuntimeError: boom in the hook"),
        (BadSpecPlugin(), "InvalidSpecError: expected a zoo.ModelSpec"),
        (MisspelledPlugin(), "unknown hook 'zoo_register_model'"),
        (WrongArgsPlugin(), "PluginValidationError"),
    ],
    ids=["raises", "bad-spec", "misspelled-hook", "wrong-arguments"],
)
def test_broken_plugin_is_recorded_skipped_whole_and_others_keep_working(
    plugin: object, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _plugins(plugin, GoodPlugin())
    broken, good = manager.records
    assert broken.status == "failed"
    assert error in (broken.error or "")
    assert broken.models == []
    assert good.status == "loaded"
    assert manager.models.list() == ["good_a", "good_b"]  # nothing of the broken one
    assert manager.pm.get_plugin(broken.name) is None
    assert f"plugin {broken.name!r}" in caplog.text and "ZOO_DISABLE_PLUGINS" in caplog.text


def test_duplicate_of_another_plugin_is_refused_naming_both() -> None:
    manager = _plugins(GoodPlugin())

    class Copycat:
        @zoo.hookimpl
        def zoo_register_models(self, registry):
            registry.register(tiny_spec("fresh"))
            registry.register(tiny_spec("good_a"))

    record = manager.add_plugin(Copycat(), name="copycat")
    assert record.status == "failed"
    assert "'good_a' from plugin 'copycat' is already registered by plugin 'GoodPlugin'" in (
        record.error or ""
    )
    assert "fresh" not in manager.models


def test_strict_mode_raises_plugin_error() -> None:
    manager = ZooPlugins(strict=True, disabled=())
    with pytest.raises(zoo.PluginError, match=r"RaisingPlugin.*boom in the hook"):
        manager.add_plugin(RaisingPlugin(), name="RaisingPlugin")


def test_disabled_plugin_is_listed_but_not_loaded() -> None:
    manager = _plugins(GoodPlugin(), disabled=("GoodPlugin",))
    (record,) = manager.records
    assert record.status == "disabled"
    assert len(manager.models) == 0


def test_environment_controls_strict_and_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", " vae , other")
    manager = ZooPlugins()
    assert manager.strict is True
    assert manager.disabled == {"vae", "other"}


def test_entry_points_load_builtins_first_and_record_distribution(
    make_dist, on_path, fresh_plugins
) -> None:
    site = make_dist(
        "aaa-early-plugin",
        "2.0",
        {
            "zoo_test_shadow": """
                import zoo
                from torch import nn

                @zoo.hookimpl
                def zoo_register_models(registry):
                    registry.register(zoo.ModelSpec(
                        name="lenet", builder=lambda: nn.Identity(), task="block",
                        input=zoo.InputSpec((3,)), outputs=(zoo.OutputSpec("out", (3,)),),
                        summary="tries to take a built-in's name"))
            """,
            "zoo_test_missing": "import this_module_does_not_exist\n",
        },
        {"shadow": "zoo_test_shadow", "missing": "zoo_test_missing"},
    )
    on_path(site)
    manager = ZooPlugins(strict=False, disabled=())
    manager.load_entry_points()
    records = {r.name: r for r in manager.records}
    # Built-ins come first, so a third party cannot take their names.
    assert manager.records[0].builtin and manager.records[0].distribution == "zoo"
    assert manager.models.get("lenet").plugin == "lenet"
    shadow = records["shadow"]
    assert (shadow.status, shadow.distribution, shadow.version) == (
        "failed",
        "aaa-early-plugin",
        "2.0",
    )
    assert "already registered by plugin 'lenet'" in (shadow.error or "")
    missing = records["missing"]
    assert missing.entry_point == "zoo_test_missing"
    assert "import failed: ModuleNotFoundError" in (missing.error or "")


def test_global_plugins_are_loaded_once_and_can_be_reset(fresh_plugins) -> None:
    first = _pluginmanager.get_plugins()
    assert _pluginmanager.get_plugins() is first
    _pluginmanager.reset_plugins()
    assert _pluginmanager.get_plugins() is not first


def test_importing_zoo_and_cli_help_load_no_torch_and_no_plugin() -> None:
    code = (
        "import sys\n"
        "import zoo, zoo.cli, zoo._pluginmanager\n"
        "from click.testing import CliRunner\n"
        "result = CliRunner().invoke(zoo.cli.cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('torch' in sys.modules, zoo._pluginmanager._plugins is None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_listing_builds_no_model(fresh_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    built = []

    class Watched:
        @zoo.hookimpl
        def zoo_register_models(self, registry):
            registry.register(tiny_spec("watched", builder=lambda: built.append(1)))

    manager = _plugins(Watched())
    monkeypatch.setattr(_pluginmanager, "_plugins", manager)
    from click.testing import CliRunner

    from zoo.cli import cli

    for args in (["list"], ["list", "--json"], ["plugins"]):
        assert CliRunner().invoke(cli, args).exit_code == 0
    assert built == []


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no")


class PluginBaseException(BaseException):
    """Neither an Exception nor one of Python's own."""


def _raising_hook(exc: BaseException) -> object:
    class Plugin:
        @zoo.hookimpl
        def zoo_register_models(self, registry):
            registry.register(tiny_spec("before_the_raise"))
            raise exc

    return Plugin()


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (KeyboardInterrupt("from the plugin"), "KeyboardInterrupt: from the plugin"),
        (SystemExit(3), "SystemExit: 3"),
        (GeneratorExit(), "GeneratorExit"),
        (PluginBaseException("odd"), "PluginBaseException: odd"),
        (Unprintable(), "Unprintable: (its message could not be printed)"),
        (RuntimeError("two\nlines"), "RuntimeError: two lines"),
    ],
    ids=[
        "KeyboardInterrupt",
        "SystemExit",
        "GeneratorExit",
        "BaseException",
        "unprintable",
        "lines",
    ],
)
def test_whatever_a_hook_raises_fails_that_plugin_alone(exc: BaseException, error: str) -> None:
    manager = _plugins(_raising_hook(exc), GoodPlugin())
    broken, good = manager.records
    assert (broken.status, broken.error) == ("failed", error)
    assert good.status == "loaded"
    assert manager.models.list() == ["good_a", "good_b"]


def test_a_real_ctrl_c_while_a_plugin_loads_still_aborts() -> None:
    """A SIGINT that arrives while a plugin runs is the user's: it propagates, even when
    the plugin catches it, and the SIGINT handler is restored either way."""
    import signal

    class Interrupted:
        @zoo.hookimpl
        def zoo_register_models(self, registry):
            signal.raise_signal(signal.SIGINT)

    class Swallowing:
        @zoo.hookimpl
        def zoo_register_models(self, registry):
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
            registry.register(tiny_spec("swallowed"))

    class Converting:
        @zoo.hookimpl
        def zoo_register_models(self, registry):
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                raise RuntimeError("interrupted, said otherwise") from None

    before = signal.getsignal(signal.SIGINT)
    assert before is signal.default_int_handler
    for plugin in (Interrupted(), Swallowing(), Converting()):
        manager = ZooPlugins(strict=False, disabled=())
        with pytest.raises(KeyboardInterrupt):
            manager.add_plugin(plugin)
        assert signal.getsignal(signal.SIGINT) is before
    # Without a real signal, a KeyboardInterrupt is the plugin's own failure.
    manager = _plugins(_raising_hook(KeyboardInterrupt()))
    assert manager.records[0].status == "failed"
    assert signal.getsignal(signal.SIGINT) is before


def test_off_the_main_thread_every_keyboard_interrupt_is_the_plugins() -> None:
    import threading

    managers: list[ZooPlugins] = []
    thread = threading.Thread(
        target=lambda: managers.append(_plugins(_raising_hook(KeyboardInterrupt())))
    )
    thread.start()
    thread.join()
    assert managers[0].records[0].status == "failed"


class Unmarked:
    def zoo_register_models(self, registry):  # no @zoo.hookimpl
        registry.register(tiny_spec("never"))


class MisspelledUnmarked:
    def zoo_register_dataset(self, registry):
        raise AssertionError("never called")


class MisspelledOptional:
    # check_pending ignores optional hooks: without the hint it would load as "loaded".
    @zoo.hookimpl(optionalhook=True)
    def zoo_register_runtime(self, registry):
        raise AssertionError("never called")


class Nothing:
    pass


@pytest.mark.parametrize(
    ("plugin", "warning"),
    [
        (Unmarked(), "it defines no zoo hook: zoo_register_models is not marked @zoo.hookimpl"),
        (
            MisspelledUnmarked(),
            "zoo_register_dataset is no hook: did you mean zoo_register_datasets?",
        ),
        (
            MisspelledOptional(),
            "zoo_register_runtime is no hook: did you mean zoo_register_runtimes?",
        ),
        (Nothing(), "it defines no zoo hook (a function named zoo_register_models, "),
    ],
    ids=["unmarked", "misspelled", "misspelled-optional", "nothing"],
)
def test_a_plugin_without_hooks_is_empty_with_a_warning_and_fails_strict_mode(
    plugin: object, warning: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _plugins(plugin, GoodPlugin())
    empty, good = manager.records
    assert (empty.status, empty.error) == ("empty", None)
    assert warning in (empty.warning or "")
    assert good.status == "loaded"
    assert f"plugin {empty.name!r} registers nothing: {empty.warning}" in caplog.text
    strict = ZooPlugins(strict=True, disabled=())
    with pytest.raises(zoo.PluginError) as raised:
        strict.add_plugin(plugin, name="p")
    message = str(raised.value)
    assert message.startswith("plugin 'p' failed: registers nothing: it defines no zoo hook")
    assert "zoo stops because ZOO_STRICT_PLUGINS=1" in message and "skipped" not in message
    assert strict.records[0].status == "failed"


def test_strict_mode_says_zoo_stops_not_that_the_plugin_was_skipped() -> None:
    manager = ZooPlugins(strict=True, disabled=())
    with pytest.raises(zoo.PluginError) as raised:
        manager.add_plugin(RaisingPlugin(), name="RaisingPlugin")
    assert str(raised.value) == (
        "plugin 'RaisingPlugin' failed: RuntimeError: boom in the hook; zoo stops because "
        "ZOO_STRICT_PLUGINS=1 (fix or uninstall it, or set ZOO_DISABLE_PLUGINS=RaisingPlugin)"
    )


class Wrapper:
    @zoo.hookimpl(wrapper=True)
    def zoo_register_models(self, registry):
        return (yield)


class Generating:
    @zoo.hookimpl
    def zoo_register_models(self, registry):
        registry.register(tiny_spec("generated"))
        yield


class Async:
    @zoo.hookimpl
    async def zoo_register_models(self, registry):
        registry.register(tiny_spec("awaited"))


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        (Wrapper(), "PluginError: zoo_register_models is a hook wrapper"),
        (Generating(), "PluginError: zoo_register_models returned a generator without running"),
        (Async(), "PluginError: zoo_register_models returned a coroutine without running"),
    ],
    ids=["wrapper", "generator", "async"],
)
def test_a_hook_that_would_not_run_fails_instead_of_registering_nothing(
    plugin: object, error: str
) -> None:
    manager = _plugins(plugin)
    assert manager.records[0].status == "failed"
    assert (manager.records[0].error or "").startswith(error)
    assert len(manager.models) == 0


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"description": 3}, "dataset 'd': description must be a string, got 3"),
        ({"argument": ""}, "dataset 'd': argument must be a non-empty string or None"),
        ({"kind": ["image"]}, "dataset 'd': kind must be a non-empty string or None"),
        ({"channels": True}, "dataset 'd': channels must be a positive int or None"),
        ({"channels": 0}, "dataset 'd': channels must be a positive int or None"),
    ],
)
def test_a_dataset_with_fields_of_the_wrong_type_is_refused(
    fields: dict[str, object], error: str
) -> None:
    class Garbage:
        @zoo.hookimpl
        def zoo_register_datasets(self, registry):
            registry.register("d", lambda request: None, **{"description": "a dataset", **fields})

    manager = _plugins(Garbage())
    assert manager.records[0].error == f"InvalidSpecError: {error}"
    assert len(manager.datasets) == 0


class HostileDir:
    def __dir__(self):
        raise SystemExit("no dir for you")


class HostileAttributes:
    def __dir__(self):
        return ["zoo_register_models"]

    def __getattr__(self, name):
        raise KeyboardInterrupt(f"no {name} for you")


class HostileEquality:
    @zoo.hookimpl
    def zoo_register_models(self, registry):
        raise AssertionError("never called: pluggy compares it first")

    def __eq__(self, other):
        raise RuntimeError("cannot compare")

    __hash__ = object.__hash__


@pytest.mark.parametrize(
    ("plugins", "error"),
    [
        ((HostileDir(), GoodPlugin()), "SystemExit: no dir for you"),
        ((HostileAttributes(), GoodPlugin()), "KeyboardInterrupt: no zoo_register_models for you"),
        # Alone: pluggy cannot unregister it (it compares plugins with ==), and a plugin loaded
        # after it would fail the same way: zoo's own load first.
        ((HostileEquality(),), "RuntimeError: cannot compare"),
    ],
    ids=["dir", "getattr", "eq"],
)
def test_a_plugin_object_that_breaks_introspection_fails_alone(
    plugins: tuple[object, ...], error: str
) -> None:
    manager = _plugins(*plugins)
    broken, *good = manager.records
    assert (broken.status, broken.error) == ("failed", error)
    assert [r.status for r in good] == ["loaded"] * len(good)
    assert manager.models.list() == (["good_a", "good_b"] if good else [])


def test_a_probe_is_hung_when_its_child_timed_out_whatever_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zoo._process import ChildFailed

    job = [_pluginmanager.PluginRecord(name="slow", status="loaded")]
    for failure, status in [
        (ChildFailed("gone quiet", timed_out=True), "hung"),
        (ChildFailed("did not finish reading its input"), "crashed"),
    ]:

        def failing(*args: object, failure: ChildFailed = failure, **kwargs: object) -> None:
            raise failure

        monkeypatch.setattr(_pluginmanager, "run_json_child", failing)
        (record,) = _pluginmanager._probe_job(job, "zoo", 1.0)
        assert (record.status, record.error) == (status, str(failure))


class _HoldingHandler:
    """A SIGINT handler that holds every Ctrl-C, as zoo's command line does in an import."""

    def __init__(self) -> None:
        self.pending = False

    def __call__(self, signum: int, frame: object) -> None:
        self.pending = True


def test_the_registered_interrupt_handler_is_found_explicitly() -> None:
    from zoo import _interrupts

    holder = _HoldingHandler()
    assert _interrupts.holding_handler(signal_handler_without_pending) is None
    assert _interrupts.holding_handler(None) is None
    before = _interrupts.set_interrupt_handler(holder)
    try:
        assert _interrupts.registered_handler() is holder
        assert _interrupts.holding_handler(holder) is holder
        assert _interrupts.holding_handler(_HoldingHandler()) is None  # not registered: not it
    finally:
        assert _interrupts.set_interrupt_handler(before) is holder
    assert _interrupts.registered_handler() is before


def signal_handler_without_pending(signum: int, frame: object) -> None:
    """A SIGINT handler that is not zoo's: it swallows the Ctrl-C."""


def test_a_ctrl_c_the_registered_handler_held_while_a_plugin_loaded_aborts_after_it() -> None:
    import signal

    from zoo import _interrupts

    class Interrupted:
        @zoo.hookimpl
        def zoo_register_models(self, registry):
            signal.raise_signal(signal.SIGINT)
            registry.register(tiny_spec("held"))

    holder = _HoldingHandler()
    original = signal.signal(signal.SIGINT, holder)
    registered = _interrupts.set_interrupt_handler(holder)
    try:
        manager = ZooPlugins(strict=False, disabled=())
        with pytest.raises(KeyboardInterrupt):
            manager.add_plugin(Interrupted())
        assert holder.pending is False  # delivered once
        assert signal.getsignal(signal.SIGINT) is holder
        # A handler that is not zoo's and swallows the Ctrl-C: the plugin loads.
        signal.signal(signal.SIGINT, signal_handler_without_pending)
        manager = ZooPlugins(strict=False, disabled=())
        assert manager.add_plugin(Interrupted()).status == "loaded"
    finally:
        _interrupts.set_interrupt_handler(registered)
        signal.signal(signal.SIGINT, original)
