from __future__ import annotations

import numpy as np
import pytest

from models import Calibrator, RiskBands, choose_calibrator, fit_isotonic, fit_sigmoid


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
    assert chosen.kind == "isotonic"
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


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="both outcomes"):
        choose_calibrator(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="unknown calibrator kind"):
        Calibrator.from_dict({"kind": "beta"})
    with pytest.raises(ValueError, match="one more label"):
        RiskBands((0.1, 0.2), ("low", "high"))
    with pytest.raises(ValueError, match="rise strictly"):
        RiskBands((0.2, 0.1, 0.3))
