"""Calibrators stored as plain JSON: centred isotonic knots or Platt (sigmoid) coefficients,
optionally followed by a logistic recalibration at the latest complete date. Both are strictly
increasing, so calibration never changes how a model ranks people.

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
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

CalibratorKind = Literal["centred_isotonic", "isotonic", "sigmoid"]
LOGIT_CLIP = 1e-5  # probabilities kept inside [1e-5, 1 - 1e-5] before taking log-odds


@dataclass(frozen=True)
class Calibrator:
    """Sigmoid: p = 1 / (1 + exp(-(a * s + b))). Centred isotonic: the isotonic fit's blocks
    as knots (x the block's mean score, y its event rate), joined by straight lines on the
    log-odds scale and extended beyond the outer knots with the outer lines' slopes, so it is
    strictly increasing: it never ties two different scores, so it keeps the model's ranking
    (and AUROC). Isotonic: linear interpolation of the step thresholds (bundles made before
    2026-11-29; its flat steps tie scores)."""

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
        elif self.kind == "centred_isotonic":
            p = _sigmoid(_logit_line(s, np.asarray(self.x), _logit(np.asarray(self.y))))
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
        if kind in ("isotonic", "centred_isotonic"):
            x = tuple(float(v) for v in data["x"])
            y = tuple(float(v) for v in data["y"])
            if len(x) != len(y) or not x or (kind == "centred_isotonic" and len(x) < 2):
                raise ValueError(f"{kind} calibrator needs equal, non-empty x and y")
            return cls(kind, x=x, y=y, info=info, recalibration=recalibration)
        raise ValueError(f"unknown calibrator kind {kind!r}")

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Recalibration:
    """logit(p') = slope * logit(p) + intercept, fitted at the latest complete date: the slope
    on `rows` held-out people (`events` events), the intercept then on `level_rows` people
    (`level_events`), with the slope fixed."""

    slope: float
    intercept: float
    rows: int
    events: int
    index_date: str
    level_rows: int = 0  # 0: the intercept came from the same rows as the slope
    level_events: int = 0

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
                   str(data["index_date"]), int(data.get("level_rows", 0)),
                   int(data.get("level_events", 0)))  # fmt: skip


def fit_recalibration(
    p: np.ndarray,
    y: np.ndarray,
    *,
    index_date: str,
    min_events: int,
    min_events_slope: int,
    level: tuple[np.ndarray, np.ndarray] | None = None,
) -> Recalibration | None:
    """Slope and intercept with at least `min_events_slope` events (or non-events), the
    intercept alone with at least `min_events`, else None (too few to move anything).

    `level`: (p, y) of more people at the same date, from whom the intercept is then taken
    with the slope fixed. The slope needs people the model never saw; the level does not (the
    model's mean prediction is no higher on the people it was fitted on: measured against the
    truth at 100k), and five times the events make it five times less noisy."""
    t = np.asarray(y, dtype=int)
    z = _logit(np.asarray(p, dtype=float))
    slope = _slope(z, t, min_events_slope)
    level_p, level_y = (z, t) if level is None else (_logit(np.asarray(level[0])), level[1])
    level_t = np.asarray(level_y, dtype=int)
    if _events(level_t) < max(min_events, 1):
        return None
    recalibration = Recalibration(
        slope, _offset_intercept(slope * level_p, level_t), len(t), int(t.sum()), index_date
    )
    if level is None:
        return recalibration
    return replace(recalibration, level_rows=len(level_t), level_events=int(level_t.sum()))


def _events(t: np.ndarray) -> int:
    """The rarer class's count: events, or non-events when events are the majority."""
    return int(min(t.sum(), len(t) - t.sum()))


def _slope(z: np.ndarray, t: np.ndarray, min_events: int) -> float:
    """The logistic slope on logit(p), with at least `min_events` events; else 1."""
    if _events(t) < max(min_events, 1):
        return 1.0
    model = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), t)
    slope = float(model.coef_[0, 0])
    return slope if slope > 0 else 1.0


def _offset_intercept(z: np.ndarray, t: np.ndarray) -> float:
    """The maximum-likelihood intercept of a logistic model with z as offset: the shift at
    which the mean predicted probability equals the observed rate."""
    observed = float(t.sum())
    low, high = -float(z.max()) - 40.0, -float(z.min()) + 40.0  # mean rate ~0 and ~1
    return float(brentq(lambda c: float(_sigmoid(z + c).sum()) - observed, low, high))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(expit(z), dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(q) - np.log1p(-q)


def _logit_line(s: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Piecewise-linear through the knots (x, z), continued past both ends in a straight line."""
    inside = np.interp(s, x, z)
    low = z[0] + (s - x[0]) * (z[1] - z[0]) / (x[1] - x[0])
    high = z[-1] + (s - x[-1]) * (z[-1] - z[-2]) / (x[-1] - x[-2])
    return np.where(s < x[0], low, np.where(s > x[-1], high, inside))


def fit_sigmoid(scores: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling: a logistic regression of y on the raw score (effectively unpenalised)."""
    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(np.asarray(scores, dtype=float).reshape(-1, 1), np.asarray(y, dtype=int))
    return Calibrator("sigmoid", a=float(model.coef_[0, 0]), b=float(model.intercept_[0]))


def fit_isotonic(scores: np.ndarray, y: np.ndarray) -> Calibrator:
    """Centred isotonic regression (Oron and Flournoy 2017): the pooled-adjacent-violators
    fit's blocks become knots at their mean score; a strictly increasing curve through them
    (see Calibrator). With a single block there is no shape to keep: Platt instead."""
    s = np.asarray(scores, dtype=float)
    t = np.asarray(y, dtype=float)
    order = np.argsort(s, kind="stable")
    s, t = s[order], t[order]
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0).fit_transform(s, t)
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) > 0])
    if len(starts) < 2:
        return fit_sigmoid(scores, y)
    x = np.add.reduceat(s, starts) / np.diff(np.r_[starts, len(s)])
    rate = np.clip(fitted[starts], LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return Calibrator("centred_isotonic", x=tuple(x.tolist()), y=tuple(rate.tolist()))


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
    chosen = fit_isotonic(s, t) if losses["isotonic"] < losses["sigmoid"] else fit_sigmoid(s, t)
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
