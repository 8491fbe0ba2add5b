"""Small synthetic training frames with a known signal, shared by model tests: logistic in
the features plus a threshold and an interaction (as real data have), so that a boosted model
has something a linear one misses, as the gate's baseline check expects."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.feature_list import Feature

BANDS = ("fit", "mild", "moderate", "severe")
INDEX_DATES = ("2023-04-01", "2024-04-01")


def small_features() -> list[Feature]:
    return [
        Feature(
            "age",
            "aged {value}",
            ("person",),
            unit="years",
            clinical=False,
            direction={"falls": 1, "complex_dependency": 1},
            constrain=True,
        ),
        Feature(
            "falls_12m",
            "{value} falls in the last 12 months",
            ("gp_event",),
            window_days=365,
            direction={"falls": 1},
            constrain=True,
        ),
        Feature(
            "medicines",
            "{value} regular medicines",
            ("prescription",),
            window_days=180,
            modifiable=True,
            direction={"falls": 1},
        ),
        Feature(
            "lives_alone",
            "lives alone: {value}",
            ("person",),
            kind="binary",
            modifiable=True,
            clinical=False,
            direction={"falls": 1},
        ),
        Feature(
            "efi_band",
            "frailty: {value}",
            ("gp_event",),
            kind="categorical",
            categories=BANDS,
            direction={"falls": 1},
        ),
        Feature("noise", "noise {value}", ("person",)),
    ]


def make_frame(people: int = 2500, seed: int = 0, shuffle_labels: bool = False) -> pd.DataFrame:
    """Two index dates per person; the label follows a known model: additive log-odds plus
    8+ medicines and living alone after a fall (both raise the risk further)."""
    rng = np.random.default_rng(seed)
    rows = people * len(INDEX_DATES)
    frame = pd.DataFrame(
        {
            "person_id": np.repeat([f"P{i:07d}" for i in range(people)], len(INDEX_DATES)),
            "index_date": pd.to_datetime(np.tile(INDEX_DATES, people)),
            "age": rng.integers(65, 100, rows).astype(float),
            "falls_12m": rng.poisson(0.4, rows).astype(float),
            "medicines": rng.poisson(5, rows).astype(float),
            "lives_alone": rng.random(rows) < 0.3,
            "efi_band": rng.choice(BANDS, rows, p=[0.5, 0.35, 0.12, 0.03]),
            "noise": rng.normal(size=rows),
        }
    )
    band_effect = frame["efi_band"].map(dict(zip(BANDS, (0.0, 0.4, 0.8, 1.2), strict=True)))
    logit = (
        -3.2
        + 0.05 * (frame["age"] - 75)
        + 0.9 * frame["falls_12m"]
        + 0.08 * frame["medicines"]
        + 0.4 * frame["lives_alone"]
        + band_effect
        + 0.8 * (frame["medicines"] >= 8)
        + 0.8 * (frame["lives_alone"] & (frame["falls_12m"] > 0))
    )
    risk = 1 / (1 + np.exp(-logit.to_numpy()))
    label = (rng.random(rows) < risk).astype(int)
    frame["label"] = rng.permutation(label) if shuffle_labels else label
    frame["died_before_event"] = False
    return frame


def split_latest(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    latest = frame["index_date"] == frame["index_date"].max()
    return frame[~latest].reset_index(drop=True), frame[latest].reset_index(drop=True)
