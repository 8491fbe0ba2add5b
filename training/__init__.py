"""Training: configuration, fitting, MLflow tracking and its model registry, the promotion gate."""

from training.config import ConfigError, TrainingConfig
from training.fit import TrainedModels, TrainingError, fit
from training.pipeline import TrainingResult, log_and_register, train_outcome
from training.promotion import GateContext, GateVerdict, PromotionError, promote
from training.tracking import LoggedRun, log_training_run, register_run

__all__ = [
    "ConfigError",
    "GateContext",
    "GateVerdict",
    "LoggedRun",
    "PromotionError",
    "TrainedModels",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "fit",
    "log_and_register",
    "log_training_run",
    "promote",
    "register_run",
    "train_outcome",
]
