"""Discovers and loads plugins, one at a time, so a broken one never takes zoo down.

Entry points of the ``zoo`` group are loaded in a fixed order: zoo's own built-ins first, then
by distribution and name; a plugin's formats and runtimes are listed in that order, each
plugin's in the order it registers them. For each plugin:

1. skip it if ``ZOO_DISABLE_PLUGINS`` names it (entry-point or distribution name);
2. import it; register it with pluggy; ``check_pending`` catches misspelled hook names;
3. call each of its ``zoo_register_*`` hooks alone, staging what it registers;
4. commit everything staged only if every step succeeded.

Any failure is recorded (distribution, version, entry point, error) and the plugin is
unregistered; with ``ZOO_STRICT_PLUGINS=1`` it raises :class:`~zoo.errors.PluginError`.
One registry per kind holds what the plugins registered: :attr:`ZooPlugins.models`,
``formats``, ``runtimes``, ``tasks`` and ``datasets``. :func:`get_plugins` is the process-wide
instance, which :func:`list_models`, :func:`get_spec` and :func:`create_model` read.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

import pluggy

from zoo import hookspecs
from zoo.datasets import DatasetEntry, DatasetRegistry
from zoo.errors import PluginError
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
    "STRICT_ENV",
    "PluginRecord",
    "ZooPlugins",
    "create_model",
    "get_format",
    "get_plugins",
    "get_spec",
    "list_models",
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
    #: ``loaded``, ``failed`` or ``disabled``
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
    #: ``ExceptionType: message`` when status is ``failed``
    error: str | None = None

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
        entry = DatasetEntry(name, loader, description, plugin=self._plugin, **fields)
        self._target.check_free(entry)
        return self.staged.add(entry)

    def commit(self) -> list[str]:
        for entry in self.staged:
            self._target.add(entry)
        return [entry.name for entry in self.staged]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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
        eps = sorted(
            md.entry_points(group=group),
            key=lambda ep: (_dist_name(ep) != _BUILTIN_DIST, _dist_name(ep) or "", ep.name),
        )
        for ep in eps:
            dist = ep.dist
            record = PluginRecord(
                name=ep.name,
                status="loaded",
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
                entry_point=ep.value,
                builtin=_dist_name(ep) == _BUILTIN_DIST,
            )
            if self._is_disabled(record):
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:
                self._fail(record, f"import failed: {_describe(exc)}", exc)
                continue
            self._register(plugin, record)

    def add_plugin(self, plugin: object, name: str | None = None) -> PluginRecord:
        """Load a plugin object directly (tests, scripts); same isolation as entry points."""
        record = PluginRecord(
            name=name or getattr(plugin, "__name__", None) or type(plugin).__name__,
            status="loaded",
        )
        if not self._is_disabled(record):
            self._register(plugin, record)
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

    def _register(self, plugin: object, record: PluginRecord) -> None:
        try:
            self.pm.register(plugin, name=record.name)
        except (Exception, SystemExit) as exc:
            self._fail(record, _describe(exc), exc)
            return
        try:
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
        except (Exception, SystemExit) as exc:
            self.pm.unregister(plugin)
            self._fail(record, _describe(exc), exc)
            return
        self.records.append(record)

    def _call_one(self, plugin: object, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call ``hook_name`` on this plugin only, so its failure is attributed to it."""
        caller = getattr(self.pm.hook, hook_name)
        results = []
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                results.append(impl.function(**{arg: kwargs[arg] for arg in impl.argnames}))
        return results

    def _fail(self, record: PluginRecord, error: str, exc: BaseException) -> None:
        record.status = "failed"
        record.error = error
        for kind, _ in KINDS:
            setattr(record, kind, [])
        self.records.append(record)
        where = f" ({record.distribution} {record.version})" if record.distribution else ""
        message = f"plugin {record.name!r}{where} failed and was skipped: {error}"
        if self.strict:
            raise PluginError(f"{message} [{STRICT_ENV}=1]") from exc
        log.warning("%s; see `zoo plugins`, or set %s=%s", message, DISABLE_ENV, record.name)

    # -- reading ---------------------------------------------------------------------------

    def record(self, name: str) -> PluginRecord | None:
        """The record of the plugin registered as ``name``, if any."""
        return next((r for r in self.records if r.name == name), None)

    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "failed"]


def _dist_name(ep: md.EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


_lock = threading.Lock()
_plugins: ZooPlugins | None = None


def get_plugins() -> ZooPlugins:
    """The process-wide plugins and registries, loaded from entry points on first use."""
    global _plugins
    with _lock:
        if _plugins is None:
            plugins = ZooPlugins()
            plugins.load_entry_points()
            _plugins = plugins
        return _plugins


def reset_plugins() -> None:
    """Forget the loaded plugins; the next ``get_plugins()`` discovers them afresh."""
    global _plugins
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
