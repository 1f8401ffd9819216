"""Training: the trainer, checkpoints, metrics and logging.

``from zoo.train import train`` then ``train("lenet", epochs=3)``, or build a ``TrainConfig``
and call ``Trainer(config).fit()``; ``zoo train`` on the command line does the same.
The names load lazily, so ``zoo.train.config`` (read by ``zoo --help``) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoo.train.config import TrainConfig
    from zoo.train.trainer import Trainer, TrainingError, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingError", "train"]

_WHERE = {
    "TrainConfig": "zoo.train.config",
    "TrainResult": "zoo.train.trainer",
    "Trainer": "zoo.train.trainer",
    "TrainingError": "zoo.train.trainer",
    "train": "zoo.train.trainer",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'zoo.train' has no attribute {name!r}")
