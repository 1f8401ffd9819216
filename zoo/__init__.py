"""zoo: a plugin-based PyTorch model zoo.

Everything zoo works with is registered by a plugin through the ``zoo`` entry-point group,
zoo's own built-ins included: models (``zoo_register_models``), export formats
(``zoo_register_formats``), benchmark runtimes (``zoo_register_runtimes``), training tasks
(``zoo_register_tasks``) and datasets (``zoo_register_datasets``); see :mod:`zoo.hookspecs`.
``list_models``, ``get_spec`` and ``create_model`` read the models, ``get_format`` the formats.
Importing zoo is cheap: torch is imported only when a model is built or a plugin is loaded.
"""

from zoo._pluginmanager import create_model, get_format, get_spec, list_models
from zoo._version import __version__
from zoo.capabilities import Capabilities, CapabilityOutcome
from zoo.errors import (
    DataError,
    DataMismatchError,
    DuplicateModelError,
    DuplicateNameError,
    InvalidArgumentsError,
    InvalidSpecError,
    PluginError,
    RegistryError,
    UnknownDatasetError,
    UnknownFormatError,
    UnknownModelError,
    UnknownNameError,
    UnknownRuntimeError,
    UnknownTaskError,
    UsageError,
    WeightsError,
    ZooError,
)
from zoo.formats import ExportRequest, Format, Runner
from zoo.hookspecs import hookimpl
from zoo.registry import InputSpec, ModelSpec, OutputSpec
from zoo.runtimes import Runtime, Session, Source
from zoo.tasks import Task, TaskRun

__all__ = [
    "Capabilities",
    "CapabilityOutcome",
    "DataError",
    "DataMismatchError",
    "DuplicateModelError",
    "DuplicateNameError",
    "ExportRequest",
    "Format",
    "InputSpec",
    "InvalidArgumentsError",
    "InvalidSpecError",
    "ModelSpec",
    "OutputSpec",
    "PluginError",
    "RegistryError",
    "Runner",
    "Runtime",
    "Session",
    "Source",
    "Task",
    "TaskRun",
    "UnknownDatasetError",
    "UnknownFormatError",
    "UnknownModelError",
    "UnknownNameError",
    "UnknownRuntimeError",
    "UnknownTaskError",
    "UsageError",
    "WeightsError",
    "ZooError",
    "__version__",
    "create_model",
    "get_format",
    "get_spec",
    "hookimpl",
    "list_models",
]
