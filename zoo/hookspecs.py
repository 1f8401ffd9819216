"""Hook specifications: the contract between zoo and its plugins.

A plugin is any module or object with functions marked ``@zoo.hookimpl`` whose names and
parameters match the specs below. It is found through the ``zoo`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points.zoo]
    my_models = "my_package.zoo_plugin"

zoo loads plugins one at a time, the first time the registry is needed (``zoo list``,
``zoo.create_model``...), never on ``import zoo`` or ``zoo --help``. A plugin that fails to
import, raises in a hook or registers a bad spec is recorded and skipped as a whole (none of
its specs stay registered); ``ZOO_STRICT_PLUGINS=1`` turns that into an error.
"""

from __future__ import annotations

from typing import Protocol

import pluggy

from zoo.registry import ModelSpec

__all__ = ["PROJECT_NAME", "ModelRegistrar", "hookimpl", "hookspec", "zoo_register_models"]

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


@hookspec
def zoo_register_models(registry: ModelRegistrar) -> None:
    """Register this plugin's models by calling ``registry.register(ModelSpec(...))``.

    Called once per plugin, right after the plugin is loaded, when zoo first needs the
    registry. The specs are committed only if the hook returns normally and all of them are
    valid and their names are free; otherwise the whole plugin is skipped and its failure
    is reported by ``zoo plugins``. Do not build models here: listing must stay cheap.

    :param registry: collects this plugin's specs.

    Since zoo 0.1.
    """
