from __future__ import annotations

import pytest

from features.outcomes import FALLS
from tests.models.frames import make_frame, small_features, split_latest
from training.config import TrainingConfig
from training.fit import TrainedModels, fit


@pytest.fixture(scope="session")
def config() -> TrainingConfig:
    return TrainingConfig.load()


@pytest.fixture(scope="session")
def trained(config: TrainingConfig) -> TrainedModels:
    train, validation = split_latest(make_frame(people=4000, seed=3))
    return fit(train, validation, small_features(), FALLS, config)
