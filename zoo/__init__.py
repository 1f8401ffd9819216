"""zoo: a plugin-based PyTorch model zoo.

Models, ours and third parties', register through the ``zoo`` entry-point group and the
``zoo_register_models`` hook; ``list_models``, ``get_spec`` and ``create_model`` read them.
Importing zoo is cheap: torch is imported only when a model is built or a plugin is loaded.
"""

from zoo.errors import (
    DataError,
    DataMismatchError,
    DuplicateModelError,
    InvalidArgumentsError,
    InvalidSpecError,
    PluginError,
    RegistryError,
    UnknownDatasetError,
    UnknownModelError,
    UsageError,
    WeightsError,
    ZooError,
)
from zoo.hookspecs import hookimpl
from zoo.registry import (
    Capabilities,
    InputSpec,
    ModelSpec,
    OutputSpec,
    Task,
    create_model,
    get_spec,
    list_models,
)

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "DataError",
    "DataMismatchError",
    "DuplicateModelError",
    "InputSpec",
    "InvalidArgumentsError",
    "InvalidSpecError",
    "ModelSpec",
    "OutputSpec",
    "PluginError",
    "RegistryError",
    "Task",
    "UnknownDatasetError",
    "UnknownModelError",
    "UsageError",
    "WeightsError",
    "ZooError",
    "__version__",
    "create_model",
    "get_spec",
    "hookimpl",
    "list_models",
]
