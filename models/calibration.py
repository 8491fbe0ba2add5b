"""Calibrators stored as plain JSON: isotonic thresholds or Platt (sigmoid) coefficients,
optionally followed by a logistic recalibration at the latest complete date.

The calibrator maps the LightGBM raw score (log-odds) to a probability. Fitting uses
scikit-learn; applying uses only numpy, so nothing is ever unpickled.

Recalibration ("temporal recalibration", Booth et al., Stat Med 2020): the first calibrator
is fitted on held-out people at training dates, whose records cover a shorter past than the
latest date's; a logistic model logit(p') = slope * logit(p) + intercept, fitted on held-out
people at the latest complete date, moves the probabilities to that date. With few events
there only the intercept is fitted; with fewer still, nothing is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from scipy.optimize import brentq
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
    recalibration: Recalibration | None = None

    def apply(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if self.kind == "sigmoid":
            p = _sigmoid(self.a * s + self.b)
        else:
            p = np.interp(s, np.asarray(self.x), np.asarray(self.y))
        return self.recalibration.apply(p) if self.recalibration else p

    def with_recalibration(self, recalibration: Recalibration | None) -> Calibrator:
        return replace(self, recalibration=recalibration)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "sigmoid":
            params: dict[str, Any] = {"a": self.a, "b": self.b}
        else:
            params = {"x": list(self.x), "y": list(self.y)}
        if self.recalibration:
            params["recalibration"] = self.recalibration.to_dict()
        return {"kind": self.kind, **params, "info": self.info}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        kind = data.get("kind")
        info = dict(data.get("info", {}))
        recal = data.get("recalibration")
        recalibration = Recalibration.from_dict(recal) if recal is not None else None
        if kind == "sigmoid":
            return cls("sigmoid", a=float(data["a"]), b=float(data["b"]), info=info,
                       recalibration=recalibration)  # fmt: skip
        if kind == "isotonic":
            x = tuple(float(v) for v in data["x"])
            y = tuple(float(v) for v in data["y"])
            if len(x) != len(y) or not x:
                raise ValueError("isotonic calibrator needs equal, non-empty x and y")
            return cls("isotonic", x=x, y=y, info=info, recalibration=recalibration)
        raise ValueError(f"unknown calibrator kind {kind!r}")

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Recalibration:
    """logit(p') = slope * logit(p) + intercept, fitted at the latest complete date."""

    slope: float
    intercept: float
    rows: int
    events: int
    index_date: str

    def apply(self, p: np.ndarray) -> np.ndarray:
        return _sigmoid(self.slope * _logit(p) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recalibration:
        slope = float(data["slope"])
        if not slope > 0:
            raise ValueError(f"recalibration slope must be positive, got {slope}")
        return cls(slope, float(data["intercept"]), int(data["rows"]), int(data["events"]),
                   str(data["index_date"]))  # fmt: skip


def fit_recalibration(
    p: np.ndarray,
    y: np.ndarray,
    *,
    index_date: str,
    min_events: int,
    min_events_slope: int,
) -> Recalibration | None:
    """Slope and intercept with at least `min_events_slope` events (or non-events), the
    intercept alone with at least `min_events`, else None (too few to move anything)."""
    t = np.asarray(y, dtype=int)
    events = int(min(t.sum(), len(t) - t.sum()))
    if events < max(min_events, 1):
        return None
    z = _logit(np.asarray(p, dtype=float))
    if events >= min_events_slope:
        model = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), t)
        slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
        if slope > 0:
            return Recalibration(slope, intercept, len(t), int(t.sum()), index_date)
    return Recalibration(1.0, _offset_intercept(z, t), len(t), int(t.sum()), index_date)


def _offset_intercept(z: np.ndarray, t: np.ndarray) -> float:
    """The maximum-likelihood intercept of a logistic model with z as offset: the shift at
    which the mean predicted probability equals the observed rate."""
    observed = float(t.sum())
    return float(brentq(lambda c: float(_sigmoid(z + c).sum()) - observed, -20.0, 20.0))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(q) - np.log1p(-q)


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
        return replace(chosen, info=info)
    losses = _cross_fitted_losses(s, t, metric, seed)
    kind: CalibratorKind = "isotonic" if losses["isotonic"] < losses["sigmoid"] else "sigmoid"
    chosen = fit_isotonic(s, t) if kind == "isotonic" else fit_sigmoid(s, t)
    info = {"rule": f"lower cross-fitted {metric}", "positives": positives, **losses}
    return replace(chosen, info=info)


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
