"""A small synthetic validation set with known true risks, shared by the evaluation tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pytest

from evaluation.inputs import EvaluationInput, FairnessLimits
from features.feature_list import Feature
from features.outcomes import FALLS

FEATURES = (
    Feature(
        name="falls_12m",
        label="{value} falls in the last 12 months",
        sources=("gp_events",),
        direction={"falls": 1},
    ),
    Feature(
        name="age",
        label="Aged {value}",
        sources=("people",),
        clinical=False,
        direction={"falls": 1},
    ),
    Feature(
        name="bmi",
        label="Body mass index {value}",
        sources=("gp_events",),
        modifiable=True,
        direction={"falls": -1},
    ),
    Feature(name="noise", label="Noise {value}", sources=("people",)),
)


def make_people(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Groups, features and true risk; groups are independent of risk (a fair world)."""
    rng = np.random.default_rng(seed)
    groups = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n),
            "age_band": rng.choice(["65-74", "75-84", "85+"], n),
            "district": rng.choice(["Bromsgrove", "Malvern", "Redditch", "Worcester"], n),
            "ethnicity": rng.choice(
                np.array(["White", "Asian", "Black", "Mixed", None], dtype=object),
                n,
                p=[0.86, 0.05, 0.03, 0.01, 0.05],
            ),
        }
    )
    values = pd.DataFrame(
        {
            "falls_12m": rng.poisson(0.4, n),
            "age": rng.integers(65, 100, n),
            "bmi": rng.normal(27, 4, n),
            "noise": rng.normal(0, 1, n),
        }
    )
    lin = (
        -2.6 + 0.9 * values["falls_12m"] + 0.03 * (values["age"] - 80) - 0.05 * (values["bmi"] - 27)
    )
    p_true = 1 / (1 + np.exp(-lin.to_numpy()))
    return groups, values, p_true


def make_input(n: int = 4000, seed: int = 7, **changes: object) -> EvaluationInput:
    groups, values, p_true = make_people(n, seed)
    rng = np.random.default_rng(seed + 1)
    y = (rng.random(n) < p_true).astype(int)
    lin_true = np.log(p_true / (1 - p_true))
    p_model = 1 / (1 + np.exp(-(lin_true + rng.normal(0, 0.3, n))))
    p_baseline = 1 / (1 + np.exp(-(-2.5 + 0.8 * values["falls_12m"].to_numpy())))
    # SHAP-like contributions: a coefficient times the centred value (bmi learned backwards).
    coef = np.array([0.9, 0.03, 0.05, 0.0])
    centred = values - values.mean()
    shap = centred.to_numpy(float) * coef + rng.normal(0, 0.001, (n, 4))
    fields: dict[str, object] = {
        "outcome": "falls",
        "predicts": FALLS.predicts,
        "model_name": "falls-lgbm",
        "model_version": "3",
        "cohort": "aged 65+, alive, not in a care home",
        "bands": FALLS.bands,
        "capacity_unit": FALLS.capacity_unit,
        "train_index_dates": [date(2023, 4, 1), date(2023, 10, 1)],
        "validation_index_dates": [date(2024, 4, 1)],
        "y": y,
        "p_model": p_model,
        "p_baseline": p_baseline,
        "p_champion": p_baseline * 1.02,
        "p_true": p_true,
        "groups": groups,
        "shap_values": shap,
        "feature_values": values,
        "features": FEATURES,
        "operating_threshold": 0.15,
        "monthly_capacity": 20,
        "died_before_event": (rng.random(n) < 0.04).astype(int) * (1 - y),
    }
    fields.update(changes)
    return EvaluationInput(**fields)  # type: ignore[arg-type]


@pytest.fixture
def input_factory() -> Callable[..., EvaluationInput]:
    return make_input


@pytest.fixture
def limits() -> FairnessLimits:
    return FairnessLimits(n_boot=60, min_group_size=100)
