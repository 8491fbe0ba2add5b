"""Discrimination, calibration, decision curves and capacity tables.

Pure functions of `y` (0/1) and `p` (probabilities). Bootstrap intervals resample people
with replacement: each resample is a row of counts (weights), so AUROC, AUPRC and Brier for a
whole block of resamples come from a few matrix operations over the people sorted once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from evaluation.inputs import ThresholdKind
from features.bands import RiskBands

EPS = 1e-6
TOP_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10, 0.20)
DECISION_THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 51))
BootMetric = Literal["auroc", "auprc", "brier"]
_CELLS_PER_BLOCK = 2_000_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap percentile interval."""

    value: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(q / (1 - q))


# ---------------------------------------------------------------- weighted core


def _tie_blocks(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order that sorts p ascending, and the start of each run of tied values."""
    order = np.argsort(p, kind="stable")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    return order, starts


def _pos_neg(w: np.ndarray, ys: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted events and non-events in each tie block (rows are resamples)."""
    pos = np.add.reduceat(w * ys, starts, axis=1)
    neg = np.add.reduceat(w * (1 - ys), starts, axis=1)
    return pos, neg


def _auc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _ap_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    # Average precision: thresholds from the highest score down, one per distinct value.
    tp = np.cumsum(pos[:, ::-1], axis=1)
    fp = np.cumsum(neg[:, ::-1], axis=1)
    flagged = tp + fp
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    total = tp[:, -1:]
    recall = np.divide(tp, total, out=np.zeros_like(tp), where=total > 0)
    step = np.diff(recall, axis=1, prepend=0.0)
    ap = (step * precision).sum(axis=1)
    return np.where(total[:, 0] > 0, ap, np.nan)


def _metric_rows(
    metric: BootMetric, w: np.ndarray, y: np.ndarray, p: np.ndarray, order: np.ndarray, starts
) -> np.ndarray:
    if metric == "brier":
        return (w @ (y - p) ** 2) / w.sum(axis=1)
    pos, neg = _pos_neg(w[:, order], y[order].astype(float), starts)
    return _auc_rows(pos, neg) if metric == "auroc" else _ap_rows(pos, neg)


def _point(metric: BootMetric, y: np.ndarray, p: np.ndarray) -> float:
    order, starts = _tie_blocks(p)
    w = np.ones((1, y.shape[0]))
    return float(_metric_rows(metric, w, y, p, order, starts)[0])


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties count a half); NaN when one class is absent."""
    return _point("auroc", np.asarray(y, float), np.asarray(p, float))


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision, as scikit-learn defines it."""
    return _point("auprc", np.asarray(y, float), np.asarray(p, float))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(y, float) - np.asarray(p, float)) ** 2))


def _resample_counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    idx = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(float)


def bootstrap_samples(
    y: np.ndarray,
    p: np.ndarray,
    metrics: Sequence[BootMetric] = ("auroc", "auprc", "brier"),
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Each metric on `n_boot` resamples of the people (the same resamples for every metric)."""
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    order, starts = _tie_blocks(p)
    block = max(1, _CELLS_PER_BLOCK // max(n, 1))
    out: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    done = 0
    while done < n_boot:
        rows = min(block, n_boot - done)
        w = _resample_counts(rng, rows, n)
        for m in metrics:
            out[m].append(_metric_rows(m, w, y, p, order, starts))
        done += rows
    return {m: np.concatenate(v) for m, v in out.items()}


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def discrimination(
    y: np.ndarray, p: np.ndarray, n_boot: int = 500, seed: int = 0, level: float = 0.95
) -> dict[str, Estimate]:
    """AUROC, AUPRC and Brier score, each with a bootstrap percentile interval."""
    samples = bootstrap_samples(y, p, ("auroc", "auprc", "brier"), n_boot, seed)
    points = {"auroc": auroc(y, p), "auprc": auprc(y, p), "brier": brier(y, p)}
    return {m: Estimate(v, *percentile_interval(samples[m], level)) for m, v in points.items()}


# ---------------------------------------------------------------- calibration


def calibration_in_the_large(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(mean y - mean p, intercept a of logit P(y) = a + logit(p))."""
    y = np.asarray(y, float)
    offset = logit(p)
    a = 0.0
    for _ in range(50):  # Newton steps on one parameter
        mu = expit(a + offset)
        step = np.sum(y - mu) / max(np.sum(mu * (1 - mu)), EPS)
        a += step
        if abs(step) < 1e-10:
            break
    return float(y.mean() - np.mean(p)), float(a)


def calibration_slope(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of an unpenalised logistic refit of y on logit(p): slope 1 and
    intercept 0 are perfect."""
    x = logit(p).reshape(-1, 1)
    fit = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(x, np.asarray(y, int))
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def calibration_slope_interval(
    y: np.ndarray, p: np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """(slope, low, high): the calibration slope with its Wald interval at `level`, from the
    logistic refit's information matrix (NaN ends when it is singular)."""
    slope, intercept = calibration_slope(y, p)
    x = logit(p)
    mu = expit(intercept + slope * x)
    w = mu * (1 - mu)
    info = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    try:
        se = float(math.sqrt(np.linalg.inv(info)[1, 1]))
    except (np.linalg.LinAlgError, ValueError):
        se = math.nan
    z = float(stats.norm.ppf(0.5 + level / 2))
    return slope, slope - z * se, slope + z * se


@dataclass(frozen=True)
class CalibrationRule:
    """When a calibration figure (a slope, or observed over expected events) is refused: its
    point estimate lies outside `point`, or its whole interval lies outside `interval`. The
    promotion gate and the monitor judge with the same rule."""

    point: tuple[float, float]
    interval: tuple[float, float]

    def __post_init__(self) -> None:
        for name, (low, high) in (("point", self.point), ("interval", self.interval)):
            if not 0 < low <= 1 <= high:
                raise ValueError(f"a calibration {name} range must hold 1: {low}, {high}")

    def refusal(self, value: float, low: float, high: float) -> str | None:
        """Why (value, its interval low-high) is refused, or None when it passes."""
        a, b = self.point
        if not a <= value <= b:
            return f"the point {value:.3f} lies outside {a} to {b}"
        c, d = self.interval
        if high < c or low > d:
            return f"the whole interval {low:.3f} to {high:.3f} lies outside {c} to {d}"
        return None

    def words(self) -> str:
        """The rule in words, for check reasons and reports."""
        (a, b), (c, d) = self.point, self.interval
        return f"refused when the point is outside {a}-{b} or the whole interval outside {c}-{d}"


def _equal_frequency_bins(p: np.ndarray, bins: int) -> np.ndarray:
    ranks = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    return (ranks * bins) // p.shape[0]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed - predicted| over equal-frequency bins, weighted by bin size."""
    curve = calibration_curve(y, p, bins)
    return float(np.sum(curve["n"] * (curve["observed"] - curve["mean_p"]).abs()) / len(y))


def wilson_interval(
    events: np.ndarray, n: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    z = float(stats.norm.ppf(0.5 + level / 2))
    events = np.asarray(events, float)
    n = np.asarray(n, float)
    rate = events / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def calibration_curve(
    y: np.ndarray, p: np.ndarray, bins: int = 10, level: float = 0.95
) -> pd.DataFrame:
    """Equal-frequency bins: size, mean predicted, observed rate and its Wilson interval."""
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    frame = pd.DataFrame({"bin": _equal_frequency_bins(p, bins), "y": y, "p": p})
    agg = frame.groupby("bin").agg(n=("y", "size"), events=("y", "sum"), mean_p=("p", "mean"))
    agg["observed"] = agg["events"] / agg["n"]
    lo, hi = wilson_interval(agg["events"].to_numpy(), agg["n"].to_numpy(), level)
    agg["lo"], agg["hi"] = lo, hi
    return agg.reset_index()


# ---------------------------------------------------------------- curves


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    if len(frame) <= max_points:
        return frame.reset_index(drop=True)
    keep = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
    return frame.iloc[keep].reset_index(drop=True)


def roc_points(y: np.ndarray, p: np.ndarray, max_points: int = 200) -> pd.DataFrame:
    """False and true positive rates at each distinct threshold, thinned for plotting."""
    order, starts = _tie_blocks(np.asarray(p, float))
    pos, neg = _pos_neg(np.ones((1, len(order))), np.asarray(y, float)[order], starts)
    tpr = np.r_[0.0, np.cumsum(pos[0, ::-1]) / pos.sum()]
    fpr = np.r_[0.0, np.cumsum(neg[0, ::-1]) / neg.sum()]
    return _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr}), max_points)


def pr_points(y: np.ndarray, p: np.ndarray, max_points: int = 200) -> pd.DataFrame:
    order, starts = _tie_blocks(np.asarray(p, float))
    pos, neg = _pos_neg(np.ones((1, len(order))), np.asarray(y, float)[order], starts)
    tp = np.cumsum(pos[0, ::-1])
    fp = np.cumsum(neg[0, ::-1])
    frame = pd.DataFrame({"recall": tp / tp[-1], "precision": tp / (tp + fp)})
    return _thin(frame, max_points)


def net_benefit(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """TP/n - FP/n * t/(1-t), treating everyone with p >= t."""
    return float(decision_curve(y, p, (threshold,))["model"].iloc[0])


def decision_curve(
    y: np.ndarray, p: np.ndarray, thresholds: Sequence[float] = DECISION_THRESHOLDS
) -> pd.DataFrame:
    """Net benefit of the model, of treating all and of treating none at each threshold."""
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    n = y.shape[0]
    t = np.asarray(thresholds, float)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    events_from = np.r_[np.cumsum(y[order][::-1])[::-1], 0.0]  # events among ps[i:]
    first = np.searchsorted(ps, t, side="left")
    tp = events_from[first]
    fp = (n - first) - tp
    odds = t / (1 - t)
    prevalence = y.mean()
    return pd.DataFrame(
        {
            "threshold": t,
            "model": tp / n - fp / n * odds,
            "treat_all": prevalence - (1 - prevalence) * odds,
            "treat_none": np.zeros_like(t),
        }
    )


# ---------------------------------------------------------------- operating point, capacity


def threshold_for(p: np.ndarray, value: float, kind: ThresholdKind) -> float:
    """The probability cut that flags people: itself, or the score of the top fraction."""
    if kind == "probability":
        return float(value)
    k = max(1, math.ceil(value * len(p)))
    return float(np.sort(np.asarray(p, float))[::-1][k - 1])


def confusion_rates(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Selection rate, PPV, sensitivity, FPR and FNR when flagging p >= threshold."""
    y = np.asarray(y, int)
    flag = np.asarray(p, float) >= threshold
    tp = float(np.sum(flag & (y == 1)))
    fp = float(np.sum(flag & (y == 0)))
    events = float(y.sum())
    non_events = float(len(y) - events)
    return {
        "threshold": float(threshold),
        "flagged": float(flag.sum()),
        "selection_rate": float(flag.mean()),
        "ppv": tp / (tp + fp) if tp + fp else math.nan,
        "sensitivity": tp / events if events else math.nan,
        "fnr": 1 - tp / events if events else math.nan,
        "fpr": fp / non_events if non_events else math.nan,
    }


def capacity_by_band(y: np.ndarray, p: np.ndarray, bands: RiskBands) -> pd.DataFrame:
    """Per band: people, events, observed rate; flagging this band and above: PPV, sensitivity."""
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    frame = pd.DataFrame({"band": bands.band(p), "y": y, "p": p})
    agg = (
        frame.groupby("band")
        .agg(people=("y", "size"), events=("y", "sum"), mean_p=("p", "mean"))
        .reindex(list(bands.labels), fill_value=0)
    )
    agg["observed_rate"] = np.divide(
        agg["events"], agg["people"], out=np.full(len(agg), np.nan), where=agg["people"] > 0
    )
    flagged = agg["people"][::-1].cumsum()[::-1]
    caught = agg["events"][::-1].cumsum()[::-1]
    agg["flagged_at_or_above"] = flagged
    agg["ppv_at_or_above"] = np.divide(
        caught, flagged, out=np.full(len(agg), np.nan), where=flagged > 0
    )
    agg["sensitivity_at_or_above"] = caught / y.sum()
    agg["lower_cut"] = (0.0, *bands.cuts)
    return agg.reset_index()


def _ranked_events(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    order = np.argsort(-np.asarray(p, float), kind="stable")
    return np.cumsum(np.asarray(y, float)[order])


def capacity_by_top(
    y: np.ndarray, p: np.ndarray, fractions: Sequence[float] = TOP_FRACTIONS
) -> pd.DataFrame:
    """Flag the top N% by score: people flagged, events among them, PPV and sensitivity."""
    n = len(y)
    caught = _ranked_events(y, p)
    k = np.array([max(1, math.ceil(f * n)) for f in fractions])
    events = caught[k - 1]
    return pd.DataFrame(
        {
            "top_fraction": list(fractions),
            "flagged": k,
            "events": events,
            "ppv": events / k,
            "sensitivity": events / caught[-1],
            "min_score": np.sort(np.asarray(p, float))[::-1][k - 1],
        }
    )


def capacity_year(y: np.ndarray, p: np.ndarray, monthly_capacity: int) -> dict[str, float]:
    """If the service can visit N a month: the top N*12 people over a year and what they hold."""
    n = len(y)
    wanted = int(monthly_capacity) * 12
    k = min(wanted, n)
    caught = _ranked_events(y, p)
    events = float(caught[k - 1]) if k > 0 else 0.0
    total = float(caught[-1])
    return {
        "monthly_capacity": float(monthly_capacity),
        "visits_per_year": float(wanted),
        "people_visited": float(k),
        "capped_at_cohort": float(wanted > n),
        "events_among_visited": events,
        "ppv": events / k if k else math.nan,
        "share_of_all_events": events / total if total else math.nan,
        "total_events": total,
    }
