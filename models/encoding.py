"""Turning registry features into the model matrix, identically in training and serving."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.feature_list import Feature


class EncodingError(ValueError):
    """A frame cannot be encoded for the model."""


def feature_to_dict(feature: Feature) -> dict[str, Any]:
    """A feature as plain JSON-ready values."""
    return {
        "name": feature.name,
        "label": feature.label,
        "sources": list(feature.sources),
        "kind": feature.kind,
        "window_days": feature.window_days,
        "unit": feature.unit,
        "modifiable": feature.modifiable,
        "clinical": feature.clinical,
        "direction": dict(sorted(feature.direction.items())),
        "constrain": feature.constrain,
        "categories": list(feature.categories),
        "minimum": feature.minimum,
        "maximum": feature.maximum,
        "explain": feature.explain,
        "label_one": feature.label_one,
        "label_missing": feature.label_missing,
    }


def feature_from_dict(data: dict[str, Any]) -> Feature:
    return Feature(
        name=data["name"],
        label=data["label"],
        sources=tuple(data["sources"]),
        kind=data["kind"],
        window_days=data["window_days"],
        unit=data["unit"],
        modifiable=data["modifiable"],
        clinical=data["clinical"],
        direction=dict(data["direction"]),
        constrain=data["constrain"],
        categories=tuple(data["categories"]),
        minimum=data["minimum"],
        maximum=data["maximum"],
        explain=bool(data.get("explain", True)),
        label_one=str(data.get("label_one", "")),  # bundles before 2026-11-26 have none
        label_missing=str(data.get("label_missing", "")),  # nor before 2026-11-29
    )


def categorical_indices(features: Sequence[Feature]) -> list[int]:
    """Positions of the categorical columns in the model matrix."""
    return [i for i, f in enumerate(features) if f.kind == "categorical"]


def encode(frame: pd.DataFrame, features: Sequence[Feature]) -> pd.DataFrame:
    """The model matrix: one float column per feature, in the feature order.

    Categoricals become their position in `Feature.categories` (unknown or missing -> NaN),
    booleans become 0/1, numerics float. Missing values stay NaN.
    """
    names = [f.name for f in features]
    return pd.DataFrame(encode_array(frame, features), index=frame.index, columns=names)


def encode_array(frame: pd.DataFrame, features: Sequence[Feature]) -> np.ndarray:
    """`encode` as a float array; float columns (the feature pipeline's output) are taken in
    one block, and only other columns are converted one by one."""
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise EncodingError(f"features frame lacks column(s) {', '.join(missing)}")
    out = np.empty((len(frame), len(features)), dtype=float)
    fast = [
        j
        for j, f in enumerate(features)
        if f.kind != "categorical" and pd.api.types.is_float_dtype(frame[f.name].dtype)
    ]
    if fast:
        out[:, fast] = frame[[features[j].name for j in fast]].to_numpy(dtype=float)
        _check_binary(out, frame, features, fast)
    done = set(fast)
    for j, f in enumerate(features):
        if j not in done:
            out[:, j] = _encode_column(frame[f.name], f)
    return out


def _check_binary(
    out: np.ndarray, frame: pd.DataFrame, features: Sequence[Feature], columns: list[int]
) -> None:
    for j in columns:
        if features[j].kind != "binary":
            continue
        col = out[:, j]
        bad = ~np.isnan(col) & (col != 0.0) & (col != 1.0)
        if bad.any():
            row = frame.index[int(np.flatnonzero(bad)[0])]
            raise EncodingError(
                f"binary feature {features[j].name} has a value other than 0/1 at row {row}: "
                f"{col[bad][0]!r}"
            )


def _encode_column(values: pd.Series, feature: Feature) -> np.ndarray:
    if feature.kind == "categorical":
        if not feature.categories:
            raise EncodingError(f"categorical feature {feature.name} has no categories")
        codes = pd.Categorical(values.astype(object), categories=list(feature.categories)).codes
        return np.where(codes < 0, np.nan, codes).astype(float)
    if feature.kind == "binary":
        encoded = _as_float(_binary_values(values), feature)
        bad = ~np.isnan(encoded) & (encoded != 0.0) & (encoded != 1.0)
        if bad.any():
            row = values.index[bad][0]
            raise EncodingError(
                f"binary feature {feature.name} has a value other than 0/1 at row {row}: "
                f"{values.loc[row]!r}"
            )
        return encoded
    return _as_float(values, feature)


def _binary_values(values: pd.Series) -> pd.Series:
    """Numbers and booleans pass through (vectorised); only text is looked at one by one."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return pd.Series(values.to_numpy(dtype=float, na_value=np.nan), index=values.index)
    return values.map(_binary_value)


def _binary_value(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes"}:
            return 1.0
        if lowered in {"false", "0", "no"}:
            return 0.0
        return value
    if value in (True, 1):
        return 1.0
    if value in (False, 0):
        return 0.0
    return value


def _as_float(values: pd.Series, feature: Feature) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = values.index[bad.to_numpy()][0]
        raise EncodingError(
            f"feature {feature.name} ({feature.kind}) has a value that is not a number "
            f"at row {row}: {values.loc[row]!r}"
        )
    return numbers.astype(float).to_numpy()
