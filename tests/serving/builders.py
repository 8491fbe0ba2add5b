"""Shared builders for the serving tests: a small registry and score results."""

from __future__ import annotations

import datetime as dt
import re

from features.feature_list import FEATURES as REGISTRY
from features.feature_list import Feature
from models.reasons import Reason
from serving.score_results import ScoreResult

# A few registry entries: clinical ones (diagnoses, medicines) and non-clinical ones.
FEATURES = {
    f.name: f
    for f in (
        Feature("falls_12m", "{value} falls in the last 12 months", ("gp_events",), clinical=False),
        Feature("lives_alone", "lives alone", ("social_care",), kind="binary", clinical=False),
        Feature("home_care", "receives home care", ("social_care",), kind="binary", clinical=False),
        Feature("age_band", "aged {value}", ("people",), kind="categorical", clinical=False),
        Feature("dementia", "has a dementia diagnosis", ("gp_events",), kind="binary"),
        Feature("n_fris", "{value} falls-risk medicines", ("prescriptions",), modifiable=True),
        Feature("telecare", "no telecare alarm", ("social_care",), modifiable=True, clinical=False),
    )
}

REASONS = [
    Reason(
        feature="falls_12m",
        label="2 falls in the last 12 months",
        value=2,
        contribution=0.9,
        direction="raises",
        modifiable=False,
        clinical=False,
    ),
    Reason(
        feature="n_fris",
        label="3 falls-risk medicines",
        value=3,
        contribution=0.5,
        direction="raises",
        modifiable=True,
        clinical=True,
    ),
    Reason(
        feature="dementia",
        label="has a dementia diagnosis",
        value=True,
        contribution=0.4,
        direction="raises",
        modifiable=False,
        clinical=True,
    ),
    Reason(
        feature="telecare",
        label="no telecare alarm",
        value=False,
        contribution=0.2,
        direction="raises",
        modifiable=True,
        clinical=False,
    ),
    Reason(
        feature="lives_alone",
        label="does not live alone",
        value=False,
        contribution=-0.1,
        direction="lowers",
        modifiable=False,
        clinical=False,
    ),
]


def make_result(**changes: object) -> ScoreResult:
    base: dict[str, object] = {
        "person_ref": "P0001234",
        "outcome": "falls",
        "model_name": "carerisk-falls",
        "model_version": "3",
        "index_date": dt.date(2025, 4, 1),
        "probability": 0.23456,
        "band": "high",
        "rank": 17,
        "reasons": REASONS,
        "notes": [],
    }
    base.update(changes)
    return ScoreResult.model_validate(base)


def label_features(label: str) -> list[Feature]:
    """The registry features whose label templates (for any value, and for 1) or words for a
    missing value could have produced this text."""
    found = []
    for feature in REGISTRY:
        if feature.label_missing and label == feature.label_missing:
            found.append(feature)
            continue
        for template in filter(None, (feature.label, feature.label_one)):
            head, _, tail = template.partition("{value}")
            if re.fullmatch(re.escape(head) + ".+?" + re.escape(tail), label):
                found.append(feature)
                break
    return found
