from __future__ import annotations

import numpy as np
import pytest

from models import Calibrator, RiskBands, choose_calibrator, fit_isotonic, fit_sigmoid
from models.calibration import fit_recalibration


def _scores(n: int, seed: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    step = np.where(s > 0, 0.6, 0.05)  # risk jumps at 0: isotonic fits, a sigmoid cannot
    p = step if shape == "step" else 1 / (1 + np.exp(-(1.5 * s - 2)))
    return s, (rng.random(n) < p).astype(int)


def test_json_round_trip_applies_identically() -> None:
    s, y = _scores(4000, 1, "step")
    for calibrator in (fit_isotonic(s, y), fit_sigmoid(s, y)):
        again = Calibrator.from_json(calibrator.to_json())
        np.testing.assert_array_equal(again.apply(s), calibrator.apply(s))
        assert again.kind == calibrator.kind


def test_sigmoid_recovers_platt_coefficients() -> None:
    s, y = _scores(20000, 2, "logistic")
    calibrator = fit_sigmoid(s, y)
    assert calibrator.a == pytest.approx(1.5, abs=0.1)
    assert calibrator.b == pytest.approx(-2.0, abs=0.1)


def test_few_positives_force_sigmoid() -> None:
    s, y = _scores(600, 3, "step")
    chosen = choose_calibrator(s, y, min_positives_isotonic=10_000)
    assert chosen.kind == "sigmoid"
    assert chosen.info["rule"] == "forced sigmoid"


def test_choice_by_held_out_loss() -> None:
    s, y = _scores(6000, 4, "step")
    chosen = choose_calibrator(s, y, min_positives_isotonic=200)
    assert chosen.kind == "centred_isotonic"
    assert chosen.info["isotonic"] < chosen.info["sigmoid"]
    s, y = _scores(6000, 5, "logistic")
    assert choose_calibrator(s, y, min_positives_isotonic=200, metric="log_loss").kind == "sigmoid"


def test_isotonic_is_monotone_and_clipped() -> None:
    s, y = _scores(3000, 6, "logistic")
    calibrator = fit_isotonic(s, y)
    grid = np.linspace(-10, 10, 200)
    p = calibrator.apply(grid)
    assert (np.diff(p) >= 0).all()
    assert p.min() >= 0 and p.max() <= 1


def test_isotonic_is_strictly_increasing_so_it_keeps_the_ranking() -> None:
    """No two different scores share a probability, inside the knots or beyond them, so the
    calibrated probabilities rank people exactly as the scores do."""
    s, y = _scores(5000, 9, "step")
    calibrator = fit_isotonic(s, y)
    assert calibrator.kind == "centred_isotonic" and len(calibrator.x) > 2
    grid = np.linspace(-12, 12, 5001)
    assert (np.diff(calibrator.apply(grid)) > 0).all()
    ranks = np.argsort(np.argsort(s))
    assert np.array_equal(np.argsort(np.argsort(calibrator.apply(s))), ranks)
    # near the knots it follows the isotonic fit's event rates
    knots = np.asarray(calibrator.x)
    np.testing.assert_allclose(calibrator.apply(knots), calibrator.y, rtol=1e-9)


def test_bundles_with_step_isotonic_still_apply_as_before() -> None:
    old = Calibrator.from_dict({"kind": "isotonic", "x": [-1.0, 0.0, 1.0], "y": [0.1, 0.1, 0.5]})
    np.testing.assert_allclose(old.apply(np.array([-2.0, -0.5, 0.5, 3.0])), [0.1, 0.1, 0.3, 0.5])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="both outcomes"):
        choose_calibrator(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="unknown calibrator kind"):
        Calibrator.from_dict({"kind": "beta"})
    with pytest.raises(ValueError, match="one more label"):
        RiskBands((0.1, 0.2), ("low", "high"))
    with pytest.raises(ValueError, match="rise strictly"):
        RiskBands((0.2, 0.1, 0.3), ("a", "b", "c", "d"))


def _shifted(n: int, seed: int, slope: float, intercept: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities p from a calibrator and outcomes whose true log-odds are
    slope * logit(p) + intercept (a later date at which risks moved)."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-(rng.normal(-2.0, 1.0, size=n))))
    z = np.log(p / (1 - p))
    return p, (rng.random(n) < 1 / (1 + np.exp(-(slope * z + intercept)))).astype(int)


def test_recalibration_recovers_slope_and_intercept() -> None:
    p, y = _shifted(40_000, 5, slope=1.2, intercept=0.3)
    fitted = fit_recalibration(p, y, index_date="2024-04-01", min_events=50, min_events_slope=300)
    assert fitted is not None
    assert fitted.slope == pytest.approx(1.2, abs=0.06)
    assert fitted.intercept == pytest.approx(0.3, abs=0.1)
    assert (fitted.rows, fitted.events) == (len(y), int(y.sum()))


def test_few_events_fit_the_intercept_alone_or_nothing() -> None:
    p, y = _shifted(2_000, 6, slope=1.0, intercept=-0.5)
    events = int(y.sum())
    alone = fit_recalibration(p, y, index_date="d", min_events=50, min_events_slope=events + 1)
    assert alone is not None and alone.slope == 1.0
    # the maximum-likelihood intercept makes the mean probability equal the observed rate
    assert alone.apply(p).sum() == pytest.approx(events, rel=1e-6)
    too_few = fit_recalibration(p, y, index_date="d", min_events=events + 1, min_events_slope=9)
    assert too_few is None


def test_recalibrated_calibrator_round_trips_and_old_json_still_loads() -> None:
    s, y = _scores(4000, 7, "logistic")
    base = fit_sigmoid(s, y)
    p, later = _shifted(4000, 8, slope=1.1, intercept=0.2)
    recalibration = fit_recalibration(
        base.apply(s), later, index_date="2024-04-01", min_events=1, min_events_slope=1
    )
    calibrator = base.with_recalibration(recalibration)
    again = Calibrator.from_json(calibrator.to_json())
    assert again == calibrator
    np.testing.assert_array_equal(again.apply(s), calibrator.apply(s))
    assert not np.array_equal(calibrator.apply(s), base.apply(s))
    assert Calibrator.from_json(base.to_json()).recalibration is None
    bad = calibrator.to_dict()
    bad["recalibration"]["slope"] = -1.0
    with pytest.raises(ValueError, match="slope must be positive"):
        Calibrator.from_dict(bad)


def test_the_level_comes_from_more_people_with_the_slope_fixed() -> None:
    """The slope from the few held-out people, the intercept from many more: the level lands
    near the true shift although the few people's own event rate is off."""
    few_p, few_y = _shifted(3_000, 11, slope=1.0, intercept=0.3)
    few_y = few_y.copy()
    few_y[np.flatnonzero(few_y)[: len(np.flatnonzero(few_y)) // 4]] = 0  # an unlucky sample
    many_p, many_y = _shifted(60_000, 12, slope=1.0, intercept=0.3)
    alone = fit_recalibration(few_p, few_y, index_date="d", min_events=50, min_events_slope=10**6)
    pooled = fit_recalibration(
        few_p, few_y, index_date="d", min_events=50, min_events_slope=10**6,
        level=(many_p, many_y),
    )  # fmt: skip
    assert alone is not None and pooled is not None
    assert abs(pooled.intercept - 0.3) < 0.05 < abs(alone.intercept - 0.3)
    assert (pooled.level_rows, pooled.level_events) == (len(many_y), int(many_y.sum()))
    assert pooled.slope == 1.0 and pooled.rows == len(few_y)
    again = Calibrator.from_json(fit_sigmoid(*_scores(500, 1, "logistic")).with_recalibration(
        pooled).to_json())  # fmt: skip
    assert again.recalibration == pooled
