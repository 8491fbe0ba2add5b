"""Calibrators stored as plain JSON: isotonic thresholds or Platt (sigmoid) coefficients.

The calibrator maps the LightGBM raw score (log-odds) to a probability. Fitting uses
scikit-learn; applying uses only numpy, so nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

CalibratorKind = Literal["isotonic", "sigmoid"]


@dataclass(frozen=True)
class Calibrator:
    """Sigmoid: p = 1 / (1 + exp(-(a * s + b))). Isotonic: linear interpolation of x -> y."""

    kind: CalibratorKind
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)  # how it was chosen

    def apply(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if self.kind == "sigmoid":
            return _sigmoid(self.a * s + self.b)
        return np.interp(s, np.asarray(self.x), np.asarray(self.y))

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "sigmoid":
            params: dict[str, Any] = {"a": self.a, "b": self.b}
        else:
            params = {"x": list(self.x), "y": list(self.y)}
        return {"kind": self.kind, **params, "info": self.info}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        kind = data.get("kind")
        info = dict(data.get("info", {}))
        if kind == "sigmoid":
            return cls("sigmoid", a=float(data["a"]), b=float(data["b"]), info=info)
        if kind == "isotonic":
            x = tuple(float(v) for v in data["x"])
            y = tuple(float(v) for v in data["y"])
            if len(x) != len(y) or not x:
                raise ValueError("isotonic calibrator needs equal, non-empty x and y")
            return cls("isotonic", x=x, y=y, info=info)
        raise ValueError(f"unknown calibrator kind {kind!r}")

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        return cls.from_dict(json.loads(text))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_sigmoid(scores: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling: a logistic regression of y on the raw score (effectively unpenalised)."""
    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(np.asarray(scores, dtype=float).reshape(-1, 1), np.asarray(y, dtype=int))
    return Calibrator("sigmoid", a=float(model.coef_[0, 0]), b=float(model.intercept_[0]))


def fit_isotonic(scores: np.ndarray, y: np.ndarray) -> Calibrator:
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    model.fit(np.asarray(scores, dtype=float), np.asarray(y, dtype=float))
    x = tuple(float(v) for v in model.X_thresholds_)
    y_ = tuple(float(v) for v in model.y_thresholds_)
    return Calibrator("isotonic", x=x, y=y_)


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    t = np.asarray(y, dtype=float)
    return float(-np.mean(t * np.log(q) + (1 - t) * np.log(1 - q)))


def choose_calibrator(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    min_positives_isotonic: int = 200,
    metric: Literal["brier", "log_loss"] = "brier",
    seed: int = 0,
) -> Calibrator:
    """Pick isotonic or sigmoid by two-fold cross-fitting on the held-out rows, then refit.

    Sigmoid is forced when the held-out rows have fewer than `min_positives_isotonic`
    positives: isotonic steps over few events overfit.
    """
    s = np.asarray(scores, dtype=float)
    t = np.asarray(y, dtype=int)
    positives = int(t.sum())
    if positives == 0 or positives == len(t):
        raise ValueError("calibration rows need both outcomes; got only one class")
    if positives < min_positives_isotonic:
        chosen = fit_sigmoid(s, t)
        info = {"rule": "forced sigmoid", "positives": positives}
        return Calibrator(chosen.kind, chosen.a, chosen.b, chosen.x, chosen.y, info)
    losses = _cross_fitted_losses(s, t, metric, seed)
    kind: CalibratorKind = "isotonic" if losses["isotonic"] < losses["sigmoid"] else "sigmoid"
    chosen = fit_isotonic(s, t) if kind == "isotonic" else fit_sigmoid(s, t)
    info = {"rule": f"lower cross-fitted {metric}", "positives": positives, **losses}
    return Calibrator(chosen.kind, chosen.a, chosen.b, chosen.x, chosen.y, info)


def _cross_fitted_losses(s: np.ndarray, t: np.ndarray, metric: str, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(s)) % 2
    score = brier if metric == "brier" else log_loss
    totals = {"isotonic": 0.0, "sigmoid": 0.0}
    for k in (0, 1):
        fit_rows, test_rows = fold != k, fold == k
        for name, fitter in (("isotonic", fit_isotonic), ("sigmoid", fit_sigmoid)):
            calibrator = fitter(s[fit_rows], t[fit_rows])
            totals[name] += score(t[test_rows], calibrator.apply(s[test_rows])) / 2
    return totals
