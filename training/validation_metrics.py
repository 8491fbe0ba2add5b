"""Validation metrics for a model and its baseline, and the paired bootstrap of AUROC."""

from __future__ import annotations

import numpy as np

from evaluation.fairness import poisson_ratio_interval
from evaluation.metrics import auprc, auroc, brier, calibration_slope, calibration_slope_interval


def validation_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    t = np.asarray(y, dtype=int)
    q = np.asarray(p, dtype=float)
    if t.min() == t.max():
        raise ValueError("validation rows hold only one outcome class; metrics are undefined")
    slope, intercept = calibration_slope(t, q)
    return {
        "auroc": auroc(t, q),
        "auprc": auprc(t, q),
        "brier": brier(t, q),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "prevalence": float(t.mean()),
        "mean_predicted": float(q.mean()),
        "n": float(len(t)),
    }


def paired_bootstrap_auroc_difference(
    y: np.ndarray,
    p_new: np.ndarray,
    p_old: np.ndarray,
    *,
    replicates: int,
    confidence: float,
    seed: int,
) -> tuple[float, float, float]:
    """AUROC(new) - AUROC(old) on the same people: point estimate and percentile interval."""
    t = np.asarray(y, dtype=int)
    a = np.asarray(p_new, dtype=float)
    b = np.asarray(p_old, dtype=float)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(replicates):
        rows = rng.integers(0, len(t), len(t))
        diff = auroc(t[rows], a[rows]) - auroc(t[rows], b[rows])
        if not np.isnan(diff):
            diffs.append(diff)
    if not diffs:
        raise ValueError("bootstrap resamples never held both outcome classes")
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return auroc(t, a) - auroc(t, b), float(low), float(high)


def observed_expected(
    y: np.ndarray, p: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """Observed over expected events, with its exact (Poisson) interval."""
    observed, expected = float(np.sum(y)), float(np.sum(p))
    low, high = poisson_ratio_interval(np.array(observed), np.array(expected), confidence)
    return observed / expected, float(low), float(high)


def against_known_risks(
    y: np.ndarray,
    p: np.ndarray,
    p_baseline: np.ndarray,
    known: dict[str, np.ndarray],
    *,
    replicates: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, object]:
    """A model's quality on validation people where the risks are known (synthetic data):
    AUROC of the model, its baseline and each known risk (`known`: e.g. records reference and
    truth), the gap to each, LightGBM minus the baseline with its paired bootstrap interval,
    the calibration slope and observed/expected with its interval."""
    t = np.asarray(y, dtype=int)
    scores = {"model": p, "baseline": p_baseline, **known}
    aurocs = {name: auroc(t, np.asarray(q, dtype=float)) for name, q in scores.items()}
    diff, low, high = paired_bootstrap_auroc_difference(
        t, p, p_baseline, replicates=replicates, confidence=confidence, seed=seed
    )
    return {
        "people": len(t),
        "events": int(t.sum()),
        "auroc": aurocs,
        "gap": {name: aurocs[name] - aurocs["model"] for name in known},
        "lightgbm_minus_baseline": (diff, low, high),
        "calibration_slope": calibration_slope(t, p)[0],
        "calibration_slope_interval": calibration_slope_interval(t, p, confidence),
        "observed_expected": observed_expected(t, p, confidence),
        "known_slopes": {name: calibration_slope(t, q)[0] for name, q in known.items()},
    }
