"""features: the data contract, the store, the feature registry, definitions and labels.

Heavy modules (Ibis, DuckDB, Spark) load on first use of the names below.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from features.registry import (
    FEATURES,
    OUTCOMES,
    Feature,
    feature,
    feature_names,
    registry_fingerprint,
)

_LAZY: dict[str, str] = {
    "compute_features": "features.engines",
    "spark_session": "features.engines",
    "LabelSettings": "features.labels",
    "build_training_set": "features.training_sets",
    "index_dates": "features.training_sets",
    "split_temporal": "features.training_sets",
    "write_snapshot": "features.snapshot",
    "read_snapshot": "features.snapshot",
    "descriptors": "features.snapshot",
}

__all__ = [
    "FEATURES",
    "OUTCOMES",
    "Feature",
    "feature",
    "feature_names",
    "registry_fingerprint",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'features' has no attribute {name!r}")
