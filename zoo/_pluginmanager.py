"""Discovers and loads plugins, one at a time, so a broken one never takes zoo down.

Entry points of the ``zoo`` group are loaded in a fixed order: zoo's own built-ins first, then
by distribution and name; a plugin's formats and runtimes are listed in that order, each
plugin's in the order it registers them. For each plugin:

1. skip it if ``ZOO_DISABLE_PLUGINS`` names it (entry-point or distribution name);
2. import it; register it with pluggy; ``check_pending`` catches misspelled hook names;
3. call each of its ``zoo_register_*`` hooks alone, staging what it registers;
4. commit everything staged only if every step succeeded.

Any failure, whatever the plugin raised (``KeyboardInterrupt``, ``SystemExit`` and other
``BaseException`` included), is recorded (distribution, version, entry point, error) and the
plugin is unregistered; with ``ZOO_STRICT_PLUGINS=1`` it raises
:class:`~zoo.errors.PluginError`. A real Ctrl-C (a SIGINT that arrived while a plugin loaded)
still aborts: :class:`PluginInterruptWatch` tells it from a plugin raising ``KeyboardInterrupt``.
A plugin that defines no hook is ``empty``: a warning, a failure in strict mode.
:func:`probe_plugins` loads each plugin in a child process instead, for the plugins that kill
or hang the interpreter, which nothing in-process can catch.
One registry per kind holds what the plugins registered: :attr:`ZooPlugins.models`,
``formats``, ``runtimes``, ``tasks`` and ``datasets``. :func:`get_plugins` is the process-wide
instance, which :func:`list_models`, :func:`get_spec` and :func:`create_model` read.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata as md
import inspect
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final

import pluggy

from zoo import hookspecs
from zoo._interrupts import PluginInterruptWatch
from zoo._process import ChildFailed, run_json_child
from zoo.datasets import DatasetEntry, DatasetRegistry
from zoo.errors import InvalidSpecError, PluginError, one_line
from zoo.formats import Format, FormatRegistry
from zoo.registry import ModelRegistry, ModelSpec, Registry
from zoo.runtimes import RuntimeRegistry
from zoo.tasks import TaskRegistry

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PROBE_TIMEOUT",
    "STRICT_ENV",
    "PluginRecord",
    "ZooPlugins",
    "create_model",
    "get_format",
    "get_plugins",
    "get_spec",
    "list_models",
    "probe_plugins",
    "reset_plugins",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
#: Comma-separated plugin (entry-point) or distribution names to skip.
DISABLE_ENV = "ZOO_DISABLE_PLUGINS"
#: "1" makes any plugin failure raise PluginError (for plugin authors' CI).
STRICT_ENV = "ZOO_STRICT_PLUGINS"
_BUILTIN_DIST = "zoo"

#: What a plugin can register, in the order its hooks are called: the attribute of
#: :class:`ZooPlugins` (and of :class:`PluginRecord`) holding each kind, and its hook.
KINDS: Final = (
    ("models", "zoo_register_models"),
    ("formats", "zoo_register_formats"),
    ("runtimes", "zoo_register_runtimes"),
    ("tasks", "zoo_register_tasks"),
    ("datasets", "zoo_register_datasets"),
)

log = logging.getLogger("zoo.plugins")


@dataclass
class PluginRecord:
    """What happened to one plugin; ``zoo plugins`` prints these."""

    name: str
    #: ``loaded``, ``empty`` (no hook: registers nothing), ``failed`` or ``disabled``; and,
    #: from :func:`probe_plugins` only, ``crashed`` (killed the interpreter) or ``hung``
    status: str
    distribution: str | None = None
    version: str | None = None
    #: ``module:attr`` as declared in the entry point
    entry_point: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    #: The names it registered, per kind.
    models: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    #: ``ExceptionType: message`` when status is ``failed``; how the child process died when
    #: ``crashed`` or ``hung``
    error: str | None = None
    #: Why an ``empty`` plugin registers nothing (close hook names when misspelled)
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def provides(self) -> dict[str, list[str]]:
        """Kind -> the names this plugin registered, for the kinds it registered any of."""
        return {kind: names for kind, _ in KINDS if (names := getattr(self, kind))}


class _Staging:
    """The registrar one hook call gets: checks each object against what is already
    registered, and keeps it apart until the whole plugin has succeeded."""

    def __init__(self, target: Registry[Any], staged: Registry[Any], plugin: str) -> None:
        self._target = target
        self._plugin = plugin
        self.staged = staged

    def register(self, obj: Any) -> Any:
        self._target.check_free(obj, plugin=self._plugin)
        return self.staged.register(obj, plugin=self._plugin)

    def commit(self) -> list[str]:
        for obj in self.staged:
            self._target.register(obj, plugin=self._plugin)
        return self.staged.names()


class _DatasetStaging:
    """:class:`_Staging` for datasets, whose ``register`` takes the entry's fields."""

    def __init__(self, target: DatasetRegistry, staged: DatasetRegistry, plugin: str) -> None:
        self._target = target
        self._plugin = plugin
        self.staged = staged

    def register(self, name: str, loader: Any, description: str, **fields: Any) -> DatasetEntry:
        _check_dataset_fields(name, description, fields)
        entry = DatasetEntry(name, loader, description, plugin=self._plugin, **fields)
        self._target.check_free(entry)
        return self.staged.add(entry)

    def commit(self) -> list[str]:
        for entry in self.staged:
            self._target.add(entry)
        return [entry.name for entry in self.staged]


def _check_dataset_fields(name: object, description: object, fields: dict[str, Any]) -> None:
    """The types of a dataset's fields, which ``zoo datasets`` and the trainer rely on."""
    where = f"dataset {name!r}"
    if not isinstance(description, str):
        raise InvalidSpecError(f"{where}: description must be a string, got {description!r:.80}")
    for key in ("argument", "kind"):
        value = fields.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise InvalidSpecError(f"{where}: {key} must be a non-empty string or None")
    channels = fields.get("channels")
    if channels is not None and (type(channels) is not int or channels <= 0):
        raise InvalidSpecError(f"{where}: channels must be a positive int or None")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _describe(exc: BaseException) -> str:
    """A plugin's error in one line, all of its message (up to 500 characters)."""
    return one_line(exc, 500, first_line=False)


class ZooPlugins:
    """A pluggy PluginManager, the registries it fills, and a record per plugin."""

    def __init__(self, *, strict: bool | None = None, disabled: Iterable[str] | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        #: model name -> ModelSpec
        self.models = ModelRegistry()
        #: format name -> Format
        self.formats = FormatRegistry()
        #: runtime name -> Runtime
        self.runtimes = RuntimeRegistry()
        #: task name -> Task subclass
        self.tasks = TaskRegistry()
        #: dataset name -> DatasetEntry
        self.datasets = DatasetRegistry()
        self.records: list[PluginRecord] = []
        self.strict = _env_flag(STRICT_ENV) if strict is None else strict
        self.disabled = _env_list(DISABLE_ENV) if disabled is None else set(disabled)

    # -- loading ---------------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every plugin declared in the entry-point ``group``, built-ins first."""
        for ep in _entry_points(group):
            self.load_entry_point(ep)

    def load_entry_point(self, ep: md.EntryPoint) -> PluginRecord:
        """Import one entry point's plugin and register it, as :meth:`load_entry_points`."""
        record = _record_of(ep)
        if not self._is_disabled(record):
            self._load(record, ep.load, "import failed: ")
        return record

    def add_plugin(self, plugin: object, name: str | None = None) -> PluginRecord:
        """Load a plugin object directly (tests, scripts); same isolation as entry points."""
        record = PluginRecord(
            name=name or getattr(plugin, "__name__", None) or type(plugin).__name__,
            status="loaded",
        )
        if not self._is_disabled(record):
            self._load(record, lambda: plugin, "")
        return record

    def _is_disabled(self, record: PluginRecord) -> bool:
        if record.name in self.disabled or (record.distribution or "") in self.disabled:
            record.status = "disabled"
            self.records.append(record)
            return True
        return False

    def _staging(self, kind: str, plugin: str) -> _Staging | _DatasetStaging:
        target = getattr(self, kind)
        if isinstance(target, DatasetRegistry):
            return _DatasetStaging(target, DatasetRegistry(), plugin)
        return _Staging(target, type(target)(), plugin)

    def _load(self, record: PluginRecord, obtain: Callable[[], object], stage: str) -> None:
        """Obtain the plugin (import it), register it and call its hooks; whatever it raises
        fails it alone, except the user's Ctrl-C."""
        # What a plugin prints goes to stderr: stdout is zoo's (`zoo list --json`).
        with PluginInterruptWatch() as watch, contextlib.redirect_stdout(sys.stderr):
            try:
                plugin = obtain()
            except BaseException as exc:
                watch.reraise_if_interrupted(exc)
                self._fail(record, stage + _describe(exc), exc)
                return
            try:
                self.pm.register(plugin, name=record.name)
            except BaseException as exc:
                watch.reraise_if_interrupted(exc)
                self._fail(record, _describe(exc), exc)
                return
            try:
                self._call_hooks(plugin, record)
            except BaseException as exc:
                watch.reraise_if_interrupted(exc)
                # pluggy compares plugins with ==, which a plugin's own __eq__ may break.
                with contextlib.suppress(Exception):
                    self.pm.unregister(plugin)
                self._fail(record, _describe(exc), exc)
                return
        watch.raise_if_swallowed()
        if record.warning is not None:
            self._empty(record)
        self.records.append(record)

    def _call_hooks(self, plugin: object, record: PluginRecord) -> None:
        # Only this plugin can be pending: every earlier one passed this check.
        self.pm.check_pending()
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        stagings = {}
        for kind, hook in KINDS:
            if hook in record.hooks:
                stagings[kind] = self._staging(kind, record.name)
                self._call_one(plugin, hook, registry=stagings[kind])
        for kind, staging in stagings.items():
            setattr(record, kind, staging.commit())
        if not set(record.hooks) & set(_HOOKS):  # an optional hook of another name is none
            record.warning = _no_hook_reason(plugin)

    def _call_one(self, plugin: object, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call ``hook_name`` on this plugin only, so its failure is attributed to it."""
        caller = getattr(self.pm.hook, hook_name)
        results = []
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if impl.hookwrapper or impl.wrapper:
                raise PluginError(
                    f"{hook_name} is a hook wrapper; zoo calls each hook of a plugin alone: "
                    "drop hookwrapper/wrapper from its @zoo.hookimpl"
                )
            result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            if inspect.isgenerator(result) or inspect.iscoroutine(result):
                result.close()
                raise PluginError(
                    f"{hook_name} returned a {type(result).__name__} without running: a hook "
                    "is a plain function (no yield, no async def)"
                )
            results.append(result)
        return results

    def _where(self, record: PluginRecord) -> str:
        where = f" ({record.distribution} {record.version})" if record.distribution else ""
        return f"plugin {record.name!r}{where}"

    def _fail(self, record: PluginRecord, error: str, exc: BaseException | None) -> None:
        record.status = "failed"
        record.error = error
        for kind, _ in KINDS:
            setattr(record, kind, [])
        self.records.append(record)
        if self.strict:
            raise PluginError(
                f"{self._where(record)} failed: {error}; zoo stops because {STRICT_ENV}=1 "
                f"(fix or uninstall it, or set {DISABLE_ENV}={record.name})"
            ) from exc
        log.warning(
            "%s failed and was skipped: %s; see `zoo plugins`, or set %s=%s",
            self._where(record),
            error,
            DISABLE_ENV,
            record.name,
        )

    def _empty(self, record: PluginRecord) -> None:
        """A plugin with no hook registers nothing: a warning (a failure in strict mode)."""
        reason = record.warning
        if self.strict:
            record.warning = None
            self._fail(record, f"registers nothing: {reason}", None)
        record.status = "empty"
        log.warning(
            "%s registers nothing: %s; see `zoo plugins`, or set %s=%s",
            self._where(record),
            reason,
            DISABLE_ENV,
            record.name,
        )

    # -- reading ---------------------------------------------------------------------------

    def record(self, name: str) -> PluginRecord | None:
        """The record of the plugin registered as ``name``, if any."""
        return next((r for r in self.records if r.name == name), None)

    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "failed"]


_HOOKS: Final = tuple(hook for _, hook in KINDS)


def _no_hook_reason(plugin: object) -> str:
    """Why a plugin has no hook: its functions named like hooks, or what a hook is."""
    hints = []
    try:
        names = sorted(dir(plugin))
    except Exception:
        names = []
    for name in names:
        try:
            if not callable(getattr(plugin, name, None)):
                continue
        except Exception:
            continue
        if name in _HOOKS:
            hints.append(f"{name} is not marked @zoo.hookimpl")
        elif close := difflib.get_close_matches(name, _HOOKS, n=1, cutoff=0.75):
            hints.append(f"{name} is no hook: did you mean {close[0]}?")
    if hints:
        return "it defines no zoo hook: " + "; ".join(hints)
    return f"it defines no zoo hook (a function named {', '.join(_HOOKS)} marked @zoo.hookimpl)"


def _dist_name(ep: md.EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def _entry_points(group: str) -> list[md.EntryPoint]:
    """The group's entry points in loading order: zoo's own, then by distribution and name."""
    return sorted(
        md.entry_points(group=group),
        key=lambda ep: (_dist_name(ep) != _BUILTIN_DIST, _dist_name(ep) or "", ep.name),
    )


def _record_of(ep: md.EntryPoint) -> PluginRecord:
    dist = ep.dist
    return PluginRecord(
        name=ep.name,
        status="loaded",
        distribution=dist.name if dist else None,
        version=dist.version if dist else None,
        entry_point=ep.value,
        builtin=_dist_name(ep) == _BUILTIN_DIST,
    )


# -- loading in child processes --------------------------------------------------------------

#: Seconds a plugin may take to load in a child process before it counts as hung.
PROBE_TIMEOUT: Final = 60.0
_PROBE_CODE: Final = "import sys; from zoo._pluginmanager import _probe; _probe(sys.argv[1:])"


def probe_plugins(
    *, timeout: float = PROBE_TIMEOUT, group: str = ENTRY_POINT_GROUP
) -> list[PluginRecord]:
    """Load each plugin in a child process of its own and record what happened, including
    what nothing in-process can catch: status ``crashed`` (the interpreter died: ``os._exit``,
    a signal; ``error`` says how) or ``hung`` (not loaded in ``timeout`` seconds).

    zoo's own plugins load together in one child; every other plugin loads alone, so a name
    it takes from another plugin is not seen here (``zoo plugins`` shows that). No plugin
    runs in this process. Disabled plugins are listed and not loaded.
    """
    disabled = _env_list(DISABLE_ENV)
    records = [_record_of(ep) for ep in _entry_points(group)]
    for record in records:
        if record.name in disabled or (record.distribution or "") in disabled:
            record.status = "disabled"
    active = [r for r in records if r.status != "disabled"]
    strict = _env_flag(STRICT_ENV)
    builtins = [r for r in active if r.builtin]
    jobs = ([builtins] if builtins else []) + [[r] for r in active if not r.builtin]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        found = [
            r for rs in pool.map(lambda job: _probe_job(job, group, timeout), jobs) for r in rs
        ]
    if strict:  # an empty plugin fails, as it would in zoo
        found = [
            _replace_status(r, "failed", f"registers nothing: {r.warning}")
            if r.status == "empty"
            else r
            for r in found
        ]
    results = {(r.distribution, r.name): r for r in found}
    return [results.get((r.distribution, r.name), r) for r in records]


def _probe_job(job: list[PluginRecord], group: str, timeout: float) -> list[PluginRecord]:
    wanted = [[r.distribution, r.name, r.entry_point] for r in job]
    command = [sys.executable, "-c", _PROBE_CODE, group, json.dumps(wanted)]
    try:
        # stdin is empty: a plugin that reads it gets EOF, not the user's terminal.
        reported = run_json_child(command, timeout=timeout, input="")
        names = {f.name for f in fields(PluginRecord)}
        loaded = [PluginRecord(**{k: v for k, v in r.items() if k in names}) for r in reported]
    except ChildFailed as exc:
        status = "hung" if exc.timed_out else "crashed"
        return [_replace_status(r, status, str(exc)) for r in job]
    except (TypeError, AttributeError, ValueError) as exc:  # a child that printed nonsense
        return [_replace_status(r, "crashed", f"printed no result: {_describe(exc)}") for r in job]
    by_key = {(r.distribution, r.name): r for r in loaded}
    missing = "the child process never reported it"
    return [
        by_key.get((r.distribution, r.name)) or _replace_status(r, "crashed", missing) for r in job
    ]


def _replace_status(record: PluginRecord, status: str, error: str) -> PluginRecord:
    return PluginRecord(**{**record.to_dict(), "status": status, "error": error, "warning": None})


def _probe(argv: list[str]) -> None:
    """The child of :func:`probe_plugins`: load the entry points named in ``argv`` (group,
    JSON list of [distribution, name, value]) and print their records as JSON."""
    global _loading
    group, wanted = argv[0], {tuple(w) for w in json.loads(argv[1])}
    logging.disable(logging.WARNING)  # the parent reports; the warnings would repeat it
    _loading = threading.get_ident()  # a plugin asking for the registries fails, as in zoo
    plugins = ZooPlugins(strict=False, disabled=())
    for ep in _entry_points(group):
        if (_dist_name(ep), ep.name, ep.value) in wanted:
            plugins.load_entry_point(ep)
    line = json.dumps([r.to_dict() for r in plugins.records], default=str)
    # Straight to the file descriptor, on a line of its own (a plugin may have replaced
    # sys.stdout or left a partial line), then out at once: a plugin's atexit handler or
    # non-daemon thread must not change the result or keep the child alive.
    os.write(1, f"\n{line}\n".encode())
    os._exit(0)


# -- the process-wide instance ------------------------------------------------------------------

_lock = threading.Lock()
_plugins: ZooPlugins | None = None
#: The thread loading plugins now, if any: a plugin that asks for them meanwhile fails.
_loading: int | None = None


def _refuse_reentry() -> None:
    if _loading == threading.get_ident():
        raise PluginError(
            "a plugin asked for zoo's registries while zoo was loading plugins "
            "(zoo.list_models, get_spec, create_model... on import or in a hook); register "
            "through the hook's registry, and use zoo's registries only after loading"
        )


def get_plugins() -> ZooPlugins:
    """The process-wide plugins and registries, loaded from entry points on first use."""
    global _plugins, _loading
    _refuse_reentry()
    with _lock:
        if _plugins is None:
            plugins = ZooPlugins()
            _loading = threading.get_ident()
            try:
                plugins.load_entry_points()
            finally:
                _loading = None
            _plugins = plugins
        return _plugins


def reset_plugins() -> None:
    """Forget the loaded plugins; the next ``get_plugins()`` discovers them afresh."""
    global _plugins
    _refuse_reentry()
    with _lock:
        _plugins = None


def list_models(
    pattern: str | Iterable[str] = "*",
    *,
    exclude: str | Iterable[str] = (),
    task: str | None = None,
    tag: str | None = None,
) -> list[str]:
    """Names of registered models, with wildcard include/exclude and task/tag filters."""
    return get_plugins().models.list(pattern, exclude=exclude, task=task, tag=tag)


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; UnknownModelError suggests close names."""
    return get_plugins().models.get(name)


def get_format(name: str) -> Format:
    """The export format registered as ``name`` (a plugin's format may build on zoo's own:
    OpenVINO's converts the ``onnx`` format's export); UnknownFormatError suggests close
    names."""
    return get_plugins().formats.get(name)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name``; ``kwargs`` are checked against its builder's options."""
    return get_plugins().models.create(name, **kwargs)
