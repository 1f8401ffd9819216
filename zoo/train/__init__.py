"""Training: the trainer, checkpoints, metrics and logging.

``from zoo.train import train`` then ``train("lenet", epochs=3)``, or build a ``TrainConfig``
and call ``Trainer(config).fit()``; ``zoo train`` on the command line does the same.
"""

from zoo.train.config import TrainConfig
from zoo.train.trainer import Trainer, TrainingError, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingError", "train"]
