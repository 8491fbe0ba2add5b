from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from evaluation import metrics as m
from features.bands import RiskBands


def _data(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 8, n).round(2)  # rounding makes ties
    y = (rng.random(n) < np.clip(p * 1.1, 0, 1)).astype(int)
    return y, p


def test_auroc_auprc_brier_match_scikit_learn() -> None:
    y, p = _data(3000)
    assert m.auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m.auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_bootstrap_auroc_of_one_resample_matches_scikit_learn_on_that_resample() -> None:
    y, p = _data(500)
    rng = np.random.default_rng(11)
    counts = m._resample_counts(rng, 1, len(y))
    idx = np.repeat(np.arange(len(y)), counts[0].astype(int))
    order, starts = m._tie_blocks(p)
    auc = m._metric_rows("auroc", counts, y.astype(float), p, order, starts)[0]
    ap = m._metric_rows("auprc", counts, y.astype(float), p, order, starts)[0]
    assert auc == pytest.approx(roc_auc_score(y[idx], p[idx]), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(y[idx], p[idx]), abs=1e-12)


def test_bootstrap_interval_contains_estimate_and_narrows_with_n() -> None:
    widths = []
    for n in (1000, 16000):
        y, p = _data(n)
        est = m.discrimination(y, p, n_boot=200, seed=1)
        for e in est.values():
            assert e.lo <= e.value <= e.hi
        widths.append(est["auroc"].hi - est["auroc"].lo)
    assert widths[1] < widths[0] / 2.5  # width shrinks about as 1/sqrt(n): 4x here


def test_bootstrap_is_seeded() -> None:
    y, p = _data(800)
    a = m.discrimination(y, p, n_boot=50, seed=5)["auroc"]
    b = m.discrimination(y, p, n_boot=50, seed=5)["auroc"]
    assert a == b


def test_calibration_slope_matches_likelihood_fit_with_scipy() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0.02, 0.6, 4000)
    lp = np.log(p / (1 - p))
    y = (rng.random(4000) < expit(0.3 + 0.7 * lp)).astype(int)

    def nll(beta: np.ndarray) -> float:
        eta = beta[0] + beta[1] * lp
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    ref = minimize(nll, x0=np.zeros(2), method="BFGS").x
    slope, intercept = m.calibration_slope(y, p)
    assert intercept == pytest.approx(ref[0], abs=1e-3)
    assert slope == pytest.approx(ref[1], abs=1e-3)
    assert 0.55 < slope < 0.85  # the planted 0.7


def test_calibration_in_the_large_intercept_matches_offset_fit() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0.05, 0.4, 3000)
    lp = np.log(p / (1 - p))
    y = (rng.random(3000) < expit(lp + 0.4)).astype(int)
    ref = minimize(
        lambda a: float(np.sum(np.logaddexp(0, a[0] + lp) - y * (a[0] + lp))), x0=[0.0]
    ).x[0]
    difference, intercept = m.calibration_in_the_large(y, p)
    assert intercept == pytest.approx(ref, abs=1e-4)
    assert difference == pytest.approx(y.mean() - p.mean())


def test_net_benefit_small_hand_case() -> None:
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.3, 0.25, 0.1, 0.05, 0.05, 0.02, 0.01])
    # t = 0.25: flagged p >= 0.25 -> 5 people, TP 2 (0.9, 0.4), FP 3.
    assert m.net_benefit(y, p, 0.25) == pytest.approx(2 / 10 - 3 / 10 * (0.25 / 0.75))
    dc = m.decision_curve(y, p, (0.1, 0.5))
    assert dc["treat_all"].tolist() == pytest.approx([0.3 - 0.7 * (0.1 / 0.9), 0.3 - 0.7 * 1.0])
    assert dc["treat_none"].tolist() == [0.0, 0.0]
    # t = 0.1: 6 flagged (ties at 0.1 included), TP 3, FP 3.
    assert dc["model"].iloc[0] == pytest.approx(3 / 10 - 3 / 10 * (0.1 / 0.9))


def test_capacity_tables_hand_case() -> None:
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0] * 10)
    p = np.tile(np.array([0.9, 0.8, 0.4, 0.3, 0.25, 0.1, 0.05, 0.05, 0.02, 0.01]), 10)
    top = m.capacity_by_top(y, p, (0.1, 0.2))
    assert top["flagged"].tolist() == [10, 20]
    assert top["events"].tolist() == [10, 10]  # the ten 0.9s are all events
    assert top["sensitivity"].tolist() == pytest.approx([1 / 3, 1 / 3])
    year = m.capacity_year(y, p, monthly_capacity=1)  # 12 visits a year
    assert year["people_visited"] == 12 and year["events_among_visited"] == 10
    assert year["share_of_all_events"] == pytest.approx(10 / 30)
    bands = m.capacity_by_band(y, p, RiskBands((0.2, 0.5), ("low", "mid", "high")))
    assert bands["people"].tolist() == [50, 30, 20]
    assert bands["events"].tolist() == [10, 10, 10]
    assert bands["sensitivity_at_or_above"].tolist() == pytest.approx([1, 2 / 3, 1 / 3])
    assert bands["ppv_at_or_above"].tolist() == pytest.approx([0.3, 0.4, 0.5])


def test_ece_and_calibration_curve() -> None:
    p = np.repeat([0.1, 0.3], 50)
    y = np.r_[np.ones(10), np.zeros(40), np.ones(20), np.zeros(30)]
    # bins of equal frequency: the first 50 have p 0.1 and rate 0.2; the rest p 0.3, rate 0.4
    assert m.expected_calibration_error(y, p, bins=2) == pytest.approx(0.1)
    curve = m.calibration_curve(y, p, bins=2)
    assert curve["observed"].tolist() == pytest.approx([0.2, 0.4])
    assert (curve["lo"] < curve["observed"]).all() and (curve["hi"] > curve["observed"]).all()


def test_wilson_interval_known_value() -> None:
    lo, hi = m.wilson_interval(np.array([10]), np.array([100]))
    assert lo[0] == pytest.approx(0.0552, abs=1e-4)
    assert hi[0] == pytest.approx(0.1744, abs=1e-4)


def test_threshold_for_top_fraction_and_confusion_rates() -> None:
    p = np.linspace(0.01, 1, 100)
    assert m.threshold_for(p, 0.1, "top_fraction") == pytest.approx(0.91)
    y = (p > 0.5).astype(int)
    rates = m.confusion_rates(y, p, 0.91)
    assert rates["flagged"] == 10 and rates["ppv"] == 1.0
    assert rates["fpr"] == 0.0 and rates["fnr"] == pytest.approx(40 / 50)
