"""Subgroup tables with bootstrap intervals, flags and gate checks.

Each group's metrics and their resamples come from vectorised group sums (evaluation.groupboot);
tests/evaluation/test_fairness.py holds the point estimates to fairlearn's MetricFrame, which
is the reference: at 470,000 people it spent about 45 s per table in per-person Python work.

The service prioritises calibration within groups: a given score should mean the same risk
in every group, so a practitioner can trust the number in front of them. Where base rates
differ between groups, a calibrated model cannot also have equal error rates (Chouldechova
2017; Kleinberg et al. 2016), so error-rate gaps are shown and flagged beyond the limits, but
only calibration and discrimination failures block promotion unless the limits say otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from evaluation import groupboot
from evaluation import metrics as m
from evaluation.inputs import Check, FairnessLimits

PRIORITISED_PROPERTY = (
    "This service prioritises calibration within groups: a given risk score should mean the "
    "same chance of the outcome whatever a person's age band, sex, ethnicity, deprivation, "
    "district, GP system or record completeness, so practitioners can trust and compare the "
    "number in front of them. When the outcome is more common in some groups than others, no "
    "model can be calibrated within every group and also have equal false-positive and "
    "false-negative rates (the impossibility result of Chouldechova 2017 and Kleinberg et al. "
    "2016). We therefore accept that error rates and referral rates differ where base rates "
    "differ; those gaps are still shown below with their intervals and flagged when they go "
    "beyond the set limits, so that they can be looked at and explained."
)
INTERSECTION = ("sex", "age_band")
GROUP_METRICS: tuple[str, ...] = (
    "prevalence",
    "mean_predicted",
    "auroc",
    "oe_ratio",
    "fpr",
    "fnr",
    "selection_rate",
    "ppv",
)
TABLE_COLUMNS = ["descriptor", "group", "n", "events"] + [
    f"{k}{suffix}" for k in GROUP_METRICS for suffix in ("", "_lo", "_hi")
]
Sensitive = pd.DataFrame | pd.Series
Grouping = tuple[pd.Index, np.ndarray]  # the groups present, each person's position in them
ERROR_RATE_METRICS = ("fpr", "fnr", "selection_rate")
METRIC_LABELS = {
    "prevalence": "observed rate",
    "mean_predicted": "mean predicted risk",
    "auroc": "AUROC",
    "oe_ratio": "observed / expected",
    "fpr": "false-positive rate",
    "fnr": "false-negative rate",
    "selection_rate": "referral (selection) rate",
    "ppv": "PPV",
}


@dataclass(frozen=True)
class Flag:
    """One group whose interval lies wholly beyond a limit."""

    descriptor: str
    group: str
    metric: str
    value: float
    lo: float
    hi: float
    blocking: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class FairnessResult:
    """Subgroup table (one row per descriptor and group) and the overall values."""

    threshold: float
    overall: dict[str, m.Estimate]
    table: pd.DataFrame
    n_boot: int
    ci_level: float
    flags: list[Flag] = field(default_factory=list)
    # descriptors not in the table, with why (a descriptor the source does not supply)
    left_out: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "left_out": dict(self.left_out),
            "threshold": self.threshold,
            "n_boot": self.n_boot,
            "ci_level": self.ci_level,
            "overall": {k: v.to_dict() for k, v in self.overall.items()},
            "table": self.table.to_dict(orient="records"),
            "flags": [f.to_dict() for f in self.flags],
            "prioritised_property": PRIORITISED_PROPERTY,
        }


def _group_index(features: Sensitive) -> pd.Index:
    """The groups present, sorted (as a groupby, or fairlearn's MetricFrame, lists them)."""
    if isinstance(features, pd.DataFrame):
        return pd.MultiIndex.from_frame(features.drop_duplicates()).sort_values()
    return pd.Index(pd.unique(features), name=features.name).sort_values()


def _group_labels(index: pd.Index) -> list[str]:
    if isinstance(index, pd.MultiIndex):
        return [" × ".join(str(v) for v in values) for values in index]
    return [str(v) for v in index]


def _codes(index: pd.Index, features: Sensitive) -> np.ndarray:
    """Each person's position in the group index."""
    keys = (
        pd.MultiIndex.from_frame(features)
        if isinstance(features, pd.DataFrame)
        else pd.Index(features)
    )
    codes = np.asarray(index.get_indexer(keys))
    if (codes < 0).any():
        raise ValueError(f"group of row {int(np.flatnonzero(codes < 0)[0])} not in the table")
    return codes


def _descriptor_table(
    descriptor: str,
    y: np.ndarray,
    p: np.ndarray,
    grouping: Grouping,
    samples: dict[str, np.ndarray],
    threshold: float,
    limits: FairnessLimits,
) -> pd.DataFrame:
    index, codes = grouping
    point = groupboot.group_metrics(y, p, codes, threshold)
    lo_q, hi_q = (1 - limits.ci_level) / 2, (1 + limits.ci_level) / 2
    lo = groupboot.quantile_frame(samples, lo_q, index)
    hi = groupboot.quantile_frame(samples, hi_q, index)
    out = pd.DataFrame(
        {
            "descriptor": descriptor,
            "group": _group_labels(index),
            "n": np.bincount(codes, minlength=len(index)),
        }
    )
    for metric in GROUP_METRICS:
        out[metric] = point[metric]
        out[f"{metric}_lo"] = lo[metric].to_numpy(dtype=float)
        out[f"{metric}_hi"] = hi[metric].to_numpy(dtype=float)
    events = np.bincount(codes, weights=y, minlength=len(index))
    expected = np.bincount(codes, weights=p, minlength=len(index))
    out["events"] = events.astype(int)
    out["oe_ratio_lo"], out["oe_ratio_hi"] = poisson_ratio_interval(
        events, expected, limits.ci_level
    )
    return out


def _grouping(features: Sensitive) -> Grouping:
    index = _group_index(features)
    return index, _codes(index, features)


def poisson_ratio_interval(
    observed: np.ndarray, expected: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) interval of observed/expected, treating the observed count as Poisson.

    Unlike a bootstrap, it stays honest for groups with few or no events: 0 observed against
    2 expected gives 0 to 1.84, not 0 to 0.
    """
    alpha = 1 - level
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(observed > 0, stats.chi2.ppf(alpha / 2, 2 * observed) / 2, 0.0)
        hi = stats.chi2.ppf(1 - alpha / 2, 2 * observed + 2) / 2
        return lo / expected, hi / expected


def _overall(table: pd.DataFrame) -> dict[str, m.Estimate]:
    row = table.iloc[0]
    return {
        k: m.Estimate(float(row[k]), float(row[f"{k}_lo"]), float(row[f"{k}_hi"]))
        for k in GROUP_METRICS
    }


def subgroup_table(
    y: np.ndarray,
    p: np.ndarray,
    groups: pd.DataFrame,
    threshold: float,
    limits: FairnessLimits,
    left_out: Mapping[str, str] | None = None,
) -> FairnessResult:
    """Every descriptor column of `groups`, plus sex × age band when both are present; the
    descriptors in `left_out` (name -> why, e.g. not supplied by the source) are not tabled,
    and the result says why."""
    y = np.asarray(y, int)
    p = np.asarray(p, float)
    dropped = {k: v for k, v in (left_out or {}).items() if k in groups.columns}
    groups = groups.drop(columns=list(dropped))
    descriptors: list[tuple[str, Sensitive]] = [(c, groups[c]) for c in groups.columns]
    if all(c in groups.columns for c in INTERSECTION):
        descriptors.append((" × ".join(INTERSECTION), groups[list(INTERSECTION)]))
    everyone = pd.Series(np.full(len(y), "all"), name="overall")
    named = [*descriptors, ("overall", everyone)]
    groupings = [_grouping(features) for _, features in named]
    codes = [c for _, c in groupings]
    samples = groupboot.group_bootstraps(y, p, codes, threshold, limits.n_boot, limits.seed)
    tables = [
        _descriptor_table(name, y, p, grouping, found, threshold, limits)
        for (name, _), grouping, found in zip(named, groupings, samples, strict=True)
    ]
    overall = _overall(tables.pop())
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=TABLE_COLUMNS)
    result = FairnessResult(
        threshold, overall, table, limits.n_boot, limits.ci_level, left_out=dropped
    )
    result.flags = fairness_flags(result, limits)
    return result


# ---------------------------------------------------------------- flags


def _fmt(v: float) -> str:
    return f"{v:.2f}" if math.isfinite(v) else "n/a"


def _oe_flag(row: pd.Series, limits: FairnessLimits, interval: tuple[float, float]) -> str | None:
    """Flagged when the observed/expected interval (at the family's level) lies beyond a limit."""
    upper, lower = math.exp(limits.max_abs_log_oe), math.exp(-limits.max_abs_log_oe)
    lo, hi = interval
    shown = f"{_fmt(row['oe_ratio'])} ({_fmt(lo)}–{_fmt(hi)})"
    if lo > upper:
        return (
            f"observed events are {shown} times those predicted, above {upper:.2f}: "
            "the model under-predicts risk for this group"
        )
    if hi < lower:
        return (
            f"observed events are {shown} times those predicted, below {lower:.2f}: "
            "the model over-predicts risk for this group"
        )
    return None


def family_level(level: float, groups: int) -> float:
    """Bonferroni: the level of each of `groups` intervals that keeps the chance of any one
    missing its group's true value at 1 - `level`. Forty groups judged at 95% each would flag
    a perfectly calibrated model's group by chance more often than not."""
    return 1 - (1 - level) / max(groups, 1)


def _oe_interval(row: pd.Series, level: float) -> tuple[float, float]:
    """The exact observed/expected interval of one table row at `level`."""
    expected = np.array([float(row["mean_predicted"]) * int(row["n"])])
    lo, hi = poisson_ratio_interval(np.array([int(row["events"])]), expected, level)
    return float(lo[0]), float(hi[0])


def _auroc_flag(row: pd.Series, reference: float, limits: FairnessLimits) -> str | None:
    """A group is flagged when it is ranked clearly worse than the descriptor's typical group.

    The comparison is with the median AUROC of the descriptor's groups, not with the overall
    AUROC: when the descriptor itself predicts the outcome (age does), every group's AUROC is
    below the overall one, and that is not a disparity between groups.
    """
    if min(row["events"], row["n"] - row["events"]) < limits.min_group_events:
        return None  # too few events (or non-events) for a group AUROC to mean anything
    interval = f"{_fmt(row['auroc'])} ({_fmt(row['auroc_lo'])}–{_fmt(row['auroc_hi'])})"
    if row["auroc_hi"] < limits.min_auroc:
        return f"AUROC {interval} is below the minimum {limits.min_auroc:.2f}"
    if row["auroc_hi"] < reference - limits.max_auroc_difference:
        return (
            f"AUROC {interval} is more than {limits.max_auroc_difference:.2f} "
            f"below the typical group's {reference:.2f}"
        )
    return None


def _gap_flag(row: pd.Series, metric: str, overall: float, limit: float) -> str | None:
    lo, hi = row[f"{metric}_lo"], row[f"{metric}_hi"]
    interval = f"{_fmt(row[metric])} ({_fmt(lo)}–{_fmt(hi)})"
    label = METRIC_LABELS[metric]
    if lo > overall + limit:
        return f"{label} {interval} is more than {limit:.2f} above the overall {overall:.2f}"
    if hi < overall - limit:
        return f"{label} {interval} is more than {limit:.2f} below the overall {overall:.2f}"
    return None


def _row_flags(
    row: pd.Series, result: FairnessResult, limits: FairnessLimits, reference: float, level: float
) -> list[Flag]:
    oe = _oe_interval(row, level)
    found: list[tuple[str, str | None, bool]] = [
        ("oe_ratio", _oe_flag(row, limits, oe), True),
        ("auroc", _auroc_flag(row, reference, limits), True),
    ]
    gaps = {
        "fnr": limits.max_fnr_difference,
        "fpr": limits.max_fpr_difference,
        "selection_rate": limits.max_selection_difference,
    }
    for metric, limit in gaps.items():
        reason = _gap_flag(row, metric, result.overall[metric].value, limit)
        found.append((metric, reason, limits.error_rates_block))
    return [
        Flag(
            descriptor=str(row["descriptor"]),
            group=str(row["group"]),
            metric=metric,
            value=float(row[metric]),
            lo=oe[0] if metric == "oe_ratio" else float(row[f"{metric}_lo"]),
            hi=oe[1] if metric == "oe_ratio" else float(row[f"{metric}_hi"]),
            blocking=blocking,
            reason=f"{row['descriptor']} = {row['group']} (n={int(row['n'])}): {reason}",
        )
        for metric, reason, blocking in found
        if reason is not None
    ]


def fairness_flags(result: FairnessResult, limits: FairnessLimits) -> list[Flag]:
    """Groups of at least `min_group_size` whose interval lies wholly beyond a limit. The
    observed/expected intervals that flag are at the family's level (`family_level` over every
    group judged); the table shows each group's own interval at `ci_level`."""
    big = result.table[result.table["n"] >= limits.min_group_size]
    judged = big[np.minimum(big["events"], big["n"] - big["events"]) >= limits.min_group_events]
    reference = judged.groupby("descriptor")["auroc"].median()
    level = family_level(limits.ci_level, len(big))
    return [
        flag
        for _, row in big.iterrows()
        for flag in _row_flags(
            row, result, limits, float(reference.get(row["descriptor"], np.nan)), level
        )
    ]


def _fairness_of(result: Any) -> FairnessResult:
    fairness = getattr(result, "fairness", result)
    if not isinstance(fairness, FairnessResult):
        raise TypeError(
            f"subgroup_checks needs a FairnessResult or EvaluationResult, got {type(result)}"
        )
    return fairness


def subgroup_checks(result: Any, limits: FairnessLimits) -> list[Check]:
    """One check per descriptor (calibration, discrimination, error rates) for the gate.

    `result` is a FairnessResult or an EvaluationResult; flags are recomputed with `limits`.
    Error-rate checks are returned only when `limits.error_rates_block` is set.
    """
    fairness = _fairness_of(result)
    flags = fairness_flags(fairness, limits)
    families = {
        "calibration": ("oe_ratio",),
        "discrimination": ("auroc",),
        "error rates": ERROR_RATE_METRICS,
    }
    if not limits.error_rates_block:
        families.pop("error rates")
    checks = [_overall_auroc_check(fairness, limits)]
    for descriptor in fairness.table["descriptor"].drop_duplicates():
        for family, metrics in families.items():
            hits = [f for f in flags if f.descriptor == descriptor and f.metric in metrics]
            checks.append(_family_check(descriptor, family, hits, limits))
    return checks


def _overall_auroc_check(fairness: FairnessResult, limits: FairnessLimits) -> Check:
    est = fairness.overall["auroc"]
    passed = est.value >= limits.min_auroc
    return Check(
        name="overall AUROC",
        passed=passed,
        reason=f"AUROC {est.value:.3f} ({est.lo:.3f}–{est.hi:.3f}); minimum {limits.min_auroc:.2f}",
    )


def _family_check(descriptor: str, family: str, hits: list[Flag], limits: FairnessLimits) -> Check:
    name = f"{family} by {descriptor}"
    if not hits:
        return Check(
            name=name,
            passed=True,
            reason=f"no group of {limits.min_group_size} or more people is beyond the limits",
        )
    return Check(name=name, passed=False, reason="; ".join(f.reason for f in hits))
