"""Discovers and loads plugins, one at a time, so a broken one never takes zoo down.

Entry points of the ``zoo`` group are loaded in a fixed order (zoo's own built-ins first, then
by distribution and name). For each plugin:

1. skip it if ``ZOO_DISABLE_PLUGINS`` names it (entry-point or distribution name);
2. import it; register it with pluggy; ``check_pending`` catches misspelled hook names;
3. call its ``zoo_register_models`` alone, staging the specs it registers;
4. commit the staged specs only if every step succeeded.

Any failure is recorded (distribution, version, entry point, error) and the plugin is
unregistered; with ``ZOO_STRICT_PLUGINS=1`` it raises :class:`~zoo.errors.PluginError`.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from zoo import hookspecs
from zoo.errors import PluginError
from zoo.registry import ModelRegistry, ModelSpec

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "STRICT_ENV",
    "PluginRecord",
    "ZooPlugins",
    "get_plugins",
    "reset_plugins",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
#: Comma-separated plugin (entry-point) or distribution names to skip.
DISABLE_ENV = "ZOO_DISABLE_PLUGINS"
#: "1" makes any plugin failure raise PluginError (for plugin authors' CI).
STRICT_ENV = "ZOO_STRICT_PLUGINS"
_BUILTIN_DIST = "zoo"

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
    models: list[str] = field(default_factory=list)
    #: ``ExceptionType: message`` when status is ``failed``
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _StagingRegistrar:
    """Collects one plugin's specs; conflicts are detected now, committed later."""

    def __init__(self, target: ModelRegistry, plugin: str) -> None:
        self._target = target
        self._plugin = plugin
        self.staged = ModelRegistry()

    def register(self, spec: ModelSpec) -> ModelSpec:
        self._target.check_free(spec, plugin=self._plugin)
        return self.staged.register(spec, plugin=self._plugin)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ZooPlugins:
    """A pluggy PluginManager, the model registry it fills, and a record per plugin."""

    def __init__(self, *, strict: bool | None = None, disabled: Iterable[str] | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = ModelRegistry()
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
            staging = _StagingRegistrar(self.registry, record.name)
            self._call_one(plugin, "zoo_register_models", registry=staging)
            for spec in staging.staged:
                self.registry.register(spec)
            record.models = [spec.name for spec in staging.staged]
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
        record.models = []
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
    """The process-wide plugins and registry, loaded from entry points on first use."""
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
