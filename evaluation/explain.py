"""Global SHAP importance and learned direction against the registry's expected direction."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.feature_list import Feature

MIN_CORRELATION = 0.05  # below this |rank correlation| the model shows no clear direction


@dataclass
class ExplanationResult:
    """One row per feature, most important first."""

    table: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table.to_dict(orient="records")}

    @property
    def disagreements(self) -> pd.DataFrame:
        return self.table[self.table["agrees"].eq(False)]


def plain_label(feature: Feature | None, name: str) -> str:
    """The registry label without its {value} placeholder, e.g. 'Falls in the last 12 months'."""
    if feature is None:
        return name.replace("_", " ")
    text = re.sub(r"\s+", " ", feature.label.replace("{value}", "")).strip(" :,-")
    return (text[:1].upper() + text[1:]) if text else name.replace("_", " ")


def _rank_correlation(x: pd.Series, s: np.ndarray) -> float:
    """Spearman correlation of feature value and SHAP value; NaN when either is constant."""
    values = pd.to_numeric(x, errors="coerce")
    keep = values.notna().to_numpy()
    if keep.sum() < 3:
        return math.nan
    a = values[keep].rank().to_numpy(dtype=float)
    b = pd.Series(s[keep]).rank().to_numpy(dtype=float)
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _direction(corr: float) -> int:
    if not math.isfinite(corr) or abs(corr) < MIN_CORRELATION:
        return 0
    return 1 if corr > 0 else -1


def _agreement(learned: int, expected: int) -> bool | None:
    if expected == 0 or learned == 0:
        return None  # nothing stated, or nothing learned: not judged
    return learned == expected


def explain(
    shap_values: np.ndarray,
    feature_values: pd.DataFrame,
    features: Sequence[Feature],
    outcome: str,
) -> ExplanationResult:
    """Mean |SHAP| per feature and whether the learned direction matches the expected one."""
    registry = {f.name: f for f in features}
    shap = np.asarray(shap_values, dtype=float)
    rows = []
    for j, name in enumerate(feature_values.columns):
        feature = registry.get(name)
        corr = _rank_correlation(feature_values[name], shap[:, j])
        learned = _direction(corr)
        expected = feature.direction_for(outcome) if feature else 0
        rows.append(
            {
                "name": name,
                "label": plain_label(feature, name),
                "mean_abs_shap": float(np.mean(np.abs(shap[:, j]))),
                "correlation": corr,
                "learned_direction": learned,
                "expected_direction": expected,
                "agrees": _agreement(learned, expected),
                "modifiable": bool(feature.modifiable) if feature else False,
                "in_registry": feature is not None,
            }
        )
    table = pd.DataFrame(rows).sort_values("mean_abs_shap", ascending=False, kind="stable")
    return ExplanationResult(table.reset_index(drop=True))
