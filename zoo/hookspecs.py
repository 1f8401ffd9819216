"""Hook specifications: the contract between zoo and its plugins.

A plugin is any module or object with functions marked ``@zoo.hookimpl`` whose names and
parameters match the specs below. It is found through the ``zoo`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points.zoo]
    my_plugin = "my_package.zoo_plugin"

Five hooks, one per kind of thing a plugin can add; a plugin implements any of them:

========================  ============================  ============================
hook                      registers                     used by
========================  ============================  ============================
``zoo_register_models``   :class:`zoo.ModelSpec`         every command
``zoo_register_formats``  :class:`zoo.Format` instances  ``zoo export``, ``zoo list``
``zoo_register_runtimes`` :class:`zoo.Runtime` instances ``zoo bench``
``zoo_register_tasks``    :class:`zoo.Task` subclasses   ``zoo train``
``zoo_register_datasets`` dataset loaders                ``zoo train --data``
========================  ============================  ============================

zoo loads plugins one at a time, the first time it needs what they register (``zoo list``,
``zoo.create_model``...), never on ``import zoo`` or ``zoo --help``, zoo's own built-ins first.
Each hook of a plugin is called alone; what it registers is kept only if every hook of the
plugin returned normally and everything it registered is valid and free: a plugin that fails
to import, raises in a hook (anything, ``KeyboardInterrupt`` and ``SystemExit`` included; a
real Ctrl-C still aborts), registers something malformed or a name already taken is recorded
and skipped as a whole (``zoo plugins`` shows why); one that defines no hook is recorded as
``empty``, with a warning; ``ZOO_STRICT_PLUGINS=1`` makes either an error. A plugin that
kills or hangs the interpreter cannot be caught in-process: ``zoo plugins --isolated`` loads
each plugin in a child process to find it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from zoo.datasets import DatasetEntry, Loader
    from zoo.formats import Format
    from zoo.registry import ModelSpec
    from zoo.runtimes import Runtime
    from zoo.tasks import Task

__all__ = [
    "PROJECT_NAME",
    "DatasetRegistrar",
    "FormatRegistrar",
    "ModelRegistrar",
    "RuntimeRegistrar",
    "TaskRegistrar",
    "hookimpl",
    "hookspec",
    "zoo_register_datasets",
    "zoo_register_formats",
    "zoo_register_models",
    "zoo_register_runtimes",
    "zoo_register_tasks",
]

#: The pluggy project name; also the entry-point group plugins declare.
PROJECT_NAME = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorate a plugin's hook functions with this.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class ModelRegistrar(Protocol):
    """What a plugin receives in ``zoo_register_models``."""

    def register(self, spec: ModelSpec) -> ModelSpec:
        """Add one model. Raises InvalidSpecError or DuplicateModelError on a bad spec."""
        ...


class FormatRegistrar(Protocol):
    """What a plugin receives in ``zoo_register_formats``."""

    def register(self, format: Format) -> Format:
        """Add one export format (an instance). Raises InvalidSpecError or
        DuplicateNameError."""
        ...


class RuntimeRegistrar(Protocol):
    """What a plugin receives in ``zoo_register_runtimes``."""

    def register(self, runtime: Runtime) -> Runtime:
        """Add one benchmark runtime (an instance). Raises InvalidSpecError or
        DuplicateNameError."""
        ...


class TaskRegistrar(Protocol):
    """What a plugin receives in ``zoo_register_tasks``."""

    def register(self, task: type[Task]) -> type[Task]:
        """Add one training task (the class). Raises InvalidSpecError or DuplicateNameError."""
        ...


class DatasetRegistrar(Protocol):
    """What a plugin receives in ``zoo_register_datasets``."""

    def register(
        self,
        name: str,
        loader: Loader | str,
        description: str,
        *,
        argument: str | None = None,
        kind: str | None = None,
        channels: int | None = None,
    ) -> DatasetEntry:
        """Add one dataset: ``loader`` reads a ``LoadRequest`` and returns ``DataSplits``
        (a function, or ``"module:function"`` imported on first use, which keeps listing
        cheap). ``argument`` names what follows ``name:`` (``"PATH"``) for datasets that take
        one; ``kind`` (``"image"``, ``"tokens"``, or a kind of the plugin's own) and
        ``channels`` let a mismatch with the model fail before loading. Raises
        InvalidSpecError or DuplicateNameError."""
        ...


@hookspec
def zoo_register_models(registry: ModelRegistrar) -> None:
    """Register this plugin's models by calling ``registry.register(ModelSpec(...))``.

    Do not build models here: listing must stay cheap.

    :param registry: collects this plugin's specs.

    Since zoo 0.1.
    """


@hookspec
def zoo_register_formats(registry: FormatRegistrar) -> None:
    """Register export formats by calling ``registry.register(MyFormat())``.

    Import the format's heavy libraries inside ``export``/``load``, not here.

    :param registry: collects this plugin's formats.

    Since zoo 0.2.
    """


@hookspec
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    """Register benchmark runtimes by calling ``registry.register(MyRuntime())``.

    Import the runtime's libraries inside ``load``, not here.

    :param registry: collects this plugin's runtimes.

    Since zoo 0.2.
    """


@hookspec
def zoo_register_tasks(registry: TaskRegistrar) -> None:
    """Register training tasks by calling ``registry.register(MyTask)`` with the class.

    :param registry: collects this plugin's tasks.

    Since zoo 0.2.
    """


@hookspec
def zoo_register_datasets(registry: DatasetRegistrar) -> None:
    """Register datasets by calling ``registry.register(name, loader, description, ...)``.

    :param registry: collects this plugin's datasets.

    Since zoo 0.2.
    """
