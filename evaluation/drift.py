"""Data and prediction drift: a compact reference profile of the data a model was validated on,
and the comparison of a later population with it.

The profile is made once, at training time, from everyone at the validation index date (the
latest population the model saw) and logged to the run as JSON: per feature, the reference
bins (numbers: cut points at the reference quantiles; categories and yes/no features: the levels
seen), the count in each bin and of missing values, overall and within each group of the
descriptors in GROUP_DESCRIPTORS. Nothing in it names a person.

Drift is measured with the population stability index (PSI, symmetric Kullback-Leibler on the
binned shares, half a count added to every bin) for size, and Pearson's chi-square test on the
same counts (scipy.stats.chi2_contingency) for whether a shift is more than noise: a shift is
flagged only when its PSI passes the limit and its p-value is below the significance level,
Bonferroni-corrected for the number of comparisons. On a whole population any shift is
"significant", so PSI decides there; in a small group the test keeps noise from being flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import rel_entr

from features.feature_list import Feature

PROFILE_FORMAT = 1
GROUP_DESCRIPTORS: tuple[str, ...] = ("gp_system", "district")
QUANTILES: tuple[float, ...] = (*(round(0.05 * i, 2) for i in range(1, 20)), 0.99)
MISSING = "missing"


class ProfileError(ValueError):
    """A reference profile cannot be made from, or used with, the data given."""


# ---------------------------------------------------------------- binning


@dataclass(frozen=True)
class Bins:
    """How one feature's values fall into bins: numeric cut points, or levels."""

    kind: str
    edges: tuple[float, ...] = ()  # numeric: bin i holds edges[i-1] < x <= edges[i]
    levels: tuple[str, ...] = ()  # categorical and binary: the levels seen in the reference

    @property
    def labels(self) -> list[str]:
        if self.kind != "numeric":
            return list(self.levels)
        if not self.edges:
            return ["all values"]
        e = [_short(x) for x in self.edges]
        middle = [f"{a} to {b}" for a, b in zip(e[:-1], e[1:], strict=True)]
        return [f"up to {e[0]}", *(f"over {m}" for m in middle), f"over {e[-1]}"]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": list(self.edges), "levels": list(self.levels)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bins:
        return cls(str(data["kind"]), tuple(data["edges"]), tuple(data["levels"]))


def _short(x: float) -> str:
    return f"{x:g}"


def _text(values: pd.Series, kind: str) -> pd.Series:
    """Levels as text: yes/no features as "0"/"1", categories as they are; missing stays NA.
    Vectorised: only values other than 0 and 1 in a yes/no feature are worded one by one."""
    if kind == "binary":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        out = np.full(len(numbers), None, dtype=object)
        out[numbers == 1] = "1"
        out[numbers == 0] = "0"
        other = ~np.isnan(numbers) & (numbers != 0) & (numbers != 1)
        out[other] = [_short(x) for x in numbers[other]]
        return pd.Series(out, index=values.index, dtype="object")
    text = values.astype("object")
    if pd.api.types.infer_dtype(text, skipna=True) not in ("string", "empty"):
        present = text.notna()
        text = text.copy()
        text[present] = text[present].astype(str)  # numbers or mixed: as text
    return text.where(text.notna(), None)


def bins_for(values: pd.Series, feature: Feature) -> Bins:
    """The reference bins of one feature."""
    if feature.kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        present = numbers[~np.isnan(numbers)]
        if present.size == 0:
            return Bins("numeric")
        cuts = np.unique(np.quantile(present, QUANTILES))
        return Bins("numeric", edges=tuple(float(c) for c in cuts[cuts < present.max()]))
    levels = _text(values, feature.kind).dropna().unique()
    return Bins(feature.kind, levels=tuple(sorted(str(v) for v in levels)))


def codes_of(values: pd.Series, bins: Bins) -> tuple[np.ndarray, pd.Series]:
    """Each value's bin (len(labels) for missing, -1 for a level the reference never had),
    and the values of those unseen levels."""
    missing_bin = len(bins.labels)
    if bins.kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        codes = np.searchsorted(np.asarray(bins.edges, dtype=float), numbers, side="left")
        codes = np.where(np.isnan(numbers), missing_bin, codes)
        return codes.astype(np.int64), pd.Series([], dtype="object")
    text = _text(values, bins.kind)
    known = pd.Categorical(text, categories=list(bins.levels)).codes.astype(np.int64)
    absent = text.isna().to_numpy()
    codes = np.where(absent, missing_bin, known)  # -1 stays for unseen levels
    return codes, text[codes == -1]


def counts_of(codes: np.ndarray, bins: Bins) -> np.ndarray:
    """Counts per bin with missing last; unseen levels are left out."""
    return np.bincount(codes[codes >= 0], minlength=len(bins.labels) + 1).astype(np.int64)


# ---------------------------------------------------------------- the reference profile


def reference_profile(
    frame: pd.DataFrame,
    features: Sequence[Feature],
    index_date: date,
    history_days: int | None = None,
) -> dict[str, Any]:
    """The profile of `frame` (everyone at the validation index date): JSON-ready.

    `history_days`: how many days of records lay behind the index date (the features'
    lookback_days). The monitor compares a later population seen through the same length of
    history, so that a longer history ("ever recorded" features) is not taken for drift.
    """
    descriptors = [g for g in GROUP_DESCRIPTORS if g in frame.columns]
    groups = {g: _group_codes(frame[g]) for g in descriptors}
    out: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "index_date": index_date.isoformat(),
        "history_days": history_days,
        "rows": len(frame),
        "groups": {g: names for g, (names, _) in groups.items()},
        "features": {},
    }
    for feature in features:
        if feature.name not in frame.columns:
            raise ProfileError(f"the reference frame has no column {feature.name}")
        bins = bins_for(frame[feature.name], feature)
        codes, _ = codes_of(frame[feature.name], bins)
        out["features"][feature.name] = {
            **bins.to_dict(),
            "counts": counts_of(codes, bins).tolist(),
            "by": {g: _counts_by(codes, bins, *groups[g]) for g in descriptors},
        }
    return out


def _group_codes(values: pd.Series) -> tuple[list[str], np.ndarray]:
    """The sorted group names and each row's position among them (missing as MISSING)."""
    text = values.astype("object").fillna(MISSING).astype(str)
    names = sorted(text.unique().tolist())
    return names, pd.Categorical(text, categories=names).codes.astype(np.int64)


def _counts_by(
    codes: np.ndarray, bins: Bins, names: list[str], group: np.ndarray
) -> dict[str, list[int]]:
    """Counts per bin (missing last) within each group."""
    table = _counts_table(codes, bins, group, len(names))
    return {name: table[i].tolist() for i, name in enumerate(names)}


def _counts_table(codes: np.ndarray, bins: Bins, group: np.ndarray, groups: int) -> np.ndarray:
    """(groups, bins + missing) counts from one bincount; unseen levels and people in no
    known group are left out."""
    width = len(bins.labels) + 1
    keep = (codes >= 0) & (group >= 0)
    flat = np.bincount(group[keep] * width + codes[keep], minlength=groups * width)
    return flat.reshape(groups, width)


def check_profile(profile: Mapping[str, Any]) -> None:
    if profile.get("format") != PROFILE_FORMAT or "features" not in profile:
        raise ProfileError(f"not a format-{PROFILE_FORMAT} reference profile")


# ---------------------------------------------------------------- statistics


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    ref = np.asarray(reference, dtype=float) + 0.5
    cur = np.asarray(current, dtype=float) + 0.5
    e, a = ref / ref.sum(), cur / cur.sum()
    return float(np.sum(rel_entr(a, e) + rel_entr(e, a)))


def chi_square_p(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of Pearson's chi-square test that both count vectors share one distribution."""
    table = np.vstack([reference, current]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


@dataclass(frozen=True)
class DriftLimits:
    """When a shift is flagged (training config [monitor], training/config.py)."""

    psi_watch: float = 0.10
    psi_retrain: float = 0.25
    significance: float = 0.01  # family-wise, Bonferroni-corrected over the comparisons
    missing_shift_watch: float = 0.05  # change in a feature's share of missing values
    missing_shift_retrain: float = 0.20
    new_level_share_watch: float = 0.01  # share of people with a level never seen
    min_group_size: int = 200  # people in a group, at both dates, before it is compared
    mean_risk_change_watch: float = 0.10  # relative change of the mean predicted risk
    mean_risk_change_retrain: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.psi_watch <= self.psi_retrain:
            raise ValueError("DriftLimits: need 0 < psi_watch <= psi_retrain")
        if not 0 < self.significance < 1:
            raise ValueError("DriftLimits.significance must be in (0, 1)")
        if not 0 < self.missing_shift_watch <= self.missing_shift_retrain <= 1:
            raise ValueError("DriftLimits: need 0 < missing_shift_watch <= missing_shift_retrain")
        if not 0 < self.mean_risk_change_watch <= self.mean_risk_change_retrain:
            raise ValueError("DriftLimits: need 0 < mean_risk_change_watch <= ..._retrain")


@dataclass
class GroupShift:
    descriptor: str
    group: str
    n_reference: int
    n_current: int
    psi: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FeatureDrift:
    """One feature's shift from the reference to now."""

    name: str
    label: str
    kind: str
    bins: list[str]
    reference: list[int]  # counts per bin, missing last
    current: list[int]
    psi: float
    p_value: float
    missing_reference: float
    missing_current: float
    missing_p_value: float
    new_levels: dict[str, int] = field(default_factory=dict)
    new_share: float = 0.0
    groups: list[GroupShift] = field(default_factory=list)  # flagged groups only

    @property
    def missing_shift(self) -> float:
        return self.missing_current - self.missing_reference

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "groups"}
        out["missing_shift"] = self.missing_shift
        out["groups"] = [g.to_dict() for g in self.groups]
        return out


def _share(counts: Sequence[int] | np.ndarray, i: int) -> float:
    total = float(np.sum(counts))
    return float(counts[i]) / total if total else math.nan


def feature_drift(
    profile: Mapping[str, Any],
    current: pd.DataFrame,
    features: Sequence[Feature],
    limits: DriftLimits,
) -> list[FeatureDrift]:
    """Every feature's shift from the profile to `current` (one row per person now), with the
    groups of GROUP_DESCRIPTORS whose own shift is flagged."""
    check_profile(profile)
    missing = [f.name for f in features if f.name not in profile["features"]]
    if missing:
        raise ProfileError(f"the reference profile has no feature {', '.join(missing)}")
    groups = _groups_now(profile, current, limits)
    compared = sum(len(g.compared) for g in groups)
    alpha = limits.significance / max(len(features) * (1 + compared), 1)
    return [_one_feature(profile, current, f, limits, alpha, groups) for f in features]


@dataclass(frozen=True)
class _Groups:
    """One descriptor's groups now: each person's group (-1: a group the reference lacks),
    and the groups big enough to compare, with their reference sizes."""

    descriptor: str
    names: list[str]
    codes: np.ndarray
    compared: dict[int, int]  # position in names -> people at the reference date


def _groups_now(
    profile: Mapping[str, Any], current: pd.DataFrame, limits: DriftLimits
) -> list[_Groups]:
    out = []
    first = next(iter(profile["features"].values()), None)
    for descriptor, names in profile.get("groups", {}).items():
        if descriptor not in current.columns or first is None:
            continue
        values = current[descriptor].astype("object").fillna(MISSING).astype(str)
        codes = pd.Categorical(values, categories=names).codes.astype(np.int64)
        sizes = np.bincount(codes[codes >= 0], minlength=len(names))
        compared = {
            i: n_ref
            for i, name in enumerate(names)
            if min(n_ref := int(np.sum(first["by"][descriptor][name])), int(sizes[i]))
            >= limits.min_group_size
        }
        out.append(_Groups(descriptor, list(names), codes, compared))
    return out


def _one_feature(
    profile: Mapping[str, Any],
    current: pd.DataFrame,
    feature: Feature,
    limits: DriftLimits,
    alpha: float,
    groups: list[_Groups],
) -> FeatureDrift:
    ref = profile["features"][feature.name]
    bins = Bins.from_dict(ref)
    codes, unseen = codes_of(current[feature.name], bins)
    now = counts_of(codes, bins)
    before = np.asarray(ref["counts"], dtype=np.int64)
    m = len(bins.labels)
    out = FeatureDrift(
        name=feature.name,
        label=_plain(feature),
        kind=feature.kind,
        bins=[*bins.labels, MISSING],
        reference=before.tolist(),
        current=now.tolist(),
        psi=psi(before, now),
        p_value=chi_square_p(before, now),
        missing_reference=_share(before, m),
        missing_current=_share(now, m),
        missing_p_value=chi_square_p(_two(before, m), _two(now, m)),
        new_levels={str(k): int(v) for k, v in unseen.value_counts().items()},
        new_share=float(len(unseen)) / len(current) if len(current) else 0.0,
    )
    for g in groups:
        table = np.asarray(_counts_table(codes, bins, g.codes, len(g.names)))
        for i, n_ref in g.compared.items():
            g_before = np.asarray(ref["by"][g.descriptor][g.names[i]], dtype=np.int64)
            g_now = table[i]
            shift = GroupShift(
                g.descriptor, g.names[i], n_ref, int(np.sum(g_now)), psi(g_before, g_now),
                chi_square_p(g_before, g_now),
            )  # fmt: skip
            if shift.psi >= limits.psi_watch and shift.p_value < alpha:
                out.groups.append(shift)
    return out


def _two(counts: np.ndarray, missing_bin: int) -> np.ndarray:
    """(present, missing) counts."""
    return np.array([counts[:missing_bin].sum(), counts[missing_bin]], dtype=np.int64)


def _plain(feature: Feature) -> str:
    return feature.label.replace("{value}", "").replace("  ", " ").strip(" :") or feature.name


# ---------------------------------------------------------------- predictions


@dataclass
class PredictionDrift:
    """The model's scores at the validation date against its scores now."""

    bands: list[str]
    reference_bands: list[int]
    current_bands: list[int]
    band_psi: float
    band_p_value: float
    decile_psi: float
    mean_reference: float
    mean_current: float
    mean_p_value: float

    @property
    def mean_change(self) -> float:
        """Relative change of the mean predicted risk."""
        return (self.mean_current - self.mean_reference) / self.mean_reference

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean_change": self.mean_change}


def prediction_drift(
    reference: np.ndarray, current: np.ndarray, cuts: Sequence[float], labels: Sequence[str]
) -> PredictionDrift:
    """Band shares (PSI and chi-square), the PSI over the reference's tenths of risk, and the
    mean predicted risk (Welch's t-test)."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if ref.size == 0 or cur.size == 0:
        raise ProfileError("prediction drift needs scores at both dates")
    band_ref = np.bincount(np.searchsorted(cuts, ref, side="right"), minlength=len(labels))
    band_cur = np.bincount(np.searchsorted(cuts, cur, side="right"), minlength=len(labels))
    tenths = np.unique(np.quantile(ref, np.linspace(0.1, 0.9, 9)))
    dec_ref = np.bincount(np.searchsorted(tenths, ref), minlength=len(tenths) + 1)
    dec_cur = np.bincount(np.searchsorted(tenths, cur), minlength=len(tenths) + 1)
    welch = stats.ttest_ind(ref, cur, equal_var=False)
    return PredictionDrift(
        bands=list(labels),
        reference_bands=band_ref.tolist(),
        current_bands=band_cur.tolist(),
        band_psi=psi(band_ref, band_cur),
        band_p_value=chi_square_p(band_ref, band_cur),
        decile_psi=psi(dec_ref, dec_cur),
        mean_reference=float(ref.mean()),
        mean_current=float(cur.mean()),
        mean_p_value=float(welch.pvalue),
    )
