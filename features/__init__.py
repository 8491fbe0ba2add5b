"""features: the data contract, the store, the feature list and the outcome set, definitions,
cohorts and labels.

Heavy modules (Ibis, DuckDB, Spark) load on first use of the names below.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from features.feature_list import (
    FEATURES,
    Feature,
    feature,
    feature_list_fingerprint,
    feature_names,
)
from features.home import Home

_LAZY: dict[str, str] = {
    "RiskBands": "features.bands",
    "compute_features": "features.engines",
    "spark_session": "features.engines",
    "LabelSettings": "features.labels",
    "Outcome": "features.outcomes",
    "OutcomeSet": "features.outcomes",
    "PRODUCT": "features.outcomes",
    "outcome_set": "features.outcomes",
    "build_training_set": "features.training_sets",
    "index_dates": "features.training_sets",
    "split_temporal": "features.training_sets",
    "write_snapshot": "features.snapshot",
    "read_snapshot": "features.snapshot",
}

__all__ = [
    "FEATURES",
    "Feature",
    "Home",
    "feature",
    "feature_names",
    "feature_list_fingerprint",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'features' has no attribute {name!r}")
