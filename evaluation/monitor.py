"""Monitoring a champion: is the population, the data feed or the model's performance moving
away from what it was trained and validated on? A verdict (stable, watch, retrain) with reasons,
and a self-contained HTML + JSON report like the evaluation report.

Four looks, each against the champion's own validation date:
- data drift per feature (evaluation.drift: PSI and chi-square against the reference profile
  logged at training, missing values, levels never seen, and the same within GP systems and
  districts), and codes in the feed that no record before that date used;
- prediction drift: band shares and the mean predicted risk, against the run's validation
  predictions;
- realised performance: the scores actually served at earlier snapshots (the scores history),
  whose horizon has now passed, against what happened: AUROC, calibration slope, observed /
  expected, and by group as in the evaluation report (evaluation.fairness). Only this
  champion's own scores are judged; older models' are shown;
- the verdict: the worst level among the reasons found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from evaluation import metrics as m
from evaluation import plots
from evaluation.drift import (
    DriftLimits,
    FeatureDrift,
    PredictionDrift,
    feature_drift,
    prediction_drift,
)
from evaluation.fairness import FairnessResult, poisson_ratio_interval, subgroup_table
from evaluation.inputs import FairnessLimits
from evaluation.report import _environment, jsonable, report_stem
from features.bands import RiskBands
from features.coverage import left_out_descriptors
from features.fairness import FAIRNESS_GROUPS
from features.feature_list import Feature
from features.new_codes import NewCodes

Verdict = Literal["stable", "watch", "retrain"]
VERDICTS: tuple[Verdict, ...] = ("stable", "watch", "retrain")
EXIT_CODES: dict[str, int] = {"stable": 0, "watch": 3, "retrain": 4}
TEMPLATES = Path(__file__).parent / "templates"
SECTIONS = (
    ("verdict", "1. Verdict"),
    ("data", "2. Data drift"),
    ("feed", "3. The data feed"),
    ("predictions", "4. Prediction drift"),
    ("performance", "5. Realised performance"),
)
FIGURE_FEATURES = 6  # shifted features drawn, the largest PSI first


@dataclass(frozen=True)
class MonitorLimits:
    """When the monitor says watch or retrain (training config [monitor])."""

    drift: DriftLimits = field(default_factory=DriftLimits)
    new_code_min_rows: int = 50  # rows of never-seen codes in one column before it is flagged
    auroc_drop_watch: float = 0.02  # realised AUROC below the validation AUROC by this
    auroc_drop_retrain: float = 0.05  # ... judged on the interval's upper end
    # the promotion gate's calibration rules, judged on the matured scores: retrain when refused
    slope_rule: m.CalibrationRule = m.CalibrationRule((0.8, 1.2), (0.9, 1.1))
    oe_rule: m.CalibrationRule = m.CalibrationRule((0.85, 1.18), (0.9, 1.1))
    min_matured_events: int = 50  # events (and non-events) before performance is judged
    n_boot: int = 200
    ci_level: float = 0.95
    seed: int = 20240601

    def fairness(self) -> FairnessLimits:
        return FairnessLimits(n_boot=self.n_boot, ci_level=self.ci_level, seed=self.seed)


@dataclass
class MonitorInput:
    """Everything the monitor reads about one champion, gathered by training/monitor_run.py."""

    outcome: str
    predicts: str
    cohort: str
    model_name: str
    model_version: str
    run_id: str
    snapshot_date: date
    data_end: date  # the store's latest activity date
    reference_date: date  # the champion's validation index date
    features: Sequence[Feature]
    bands: RiskBands
    horizon_months: int
    profile: Mapping[str, Any] | None  # None: the run logged no reference profile
    # the cohort now, its features seen through the reference's length of history (the
    # profile's history_days), with gp_system and district; and the champion's scores of it
    current: pd.DataFrame
    p_current: np.ndarray
    y_reference: np.ndarray  # the run's validation people: outcome and score
    p_reference: np.ndarray
    matured: pd.DataFrame  # scores history rows with label and died_before_event
    pending: pd.DataFrame = field(default_factory=pd.DataFrame)
    unmatched: Mapping[str, int] = field(default_factory=dict)
    new_codes: Sequence[NewCodes] = ()
    operating_threshold: float = 0.1
    p_served: np.ndarray | None = None  # the scores served now (all the history there is)
    # what the champion's training source lacked (its bundle's coverage, features.coverage)
    coverage: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Reason:
    level: Verdict
    area: str  # data, feed, predictions, performance
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "area": self.area, "text": self.text}


@dataclass(frozen=True)
class Interval:
    value: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Performance:
    """Realised performance of the champion's matured scores, with the validation's figures."""

    n: int
    events: int
    snapshots: list[str]
    auroc: m.Estimate
    slope: Interval
    oe: Interval
    observed_rate: float
    mean_predicted: float
    validation: dict[str, float]  # auroc, slope, oe at the validation date
    calibration_curve: pd.DataFrame
    fairness: FairnessResult | None  # None below min_matured_events

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "events": self.events,
            "snapshots": self.snapshots,
            "auroc": self.auroc.to_dict(),
            "slope": self.slope.to_dict(),
            "oe": self.oe.to_dict(),
            "observed_rate": self.observed_rate,
            "mean_predicted": self.mean_predicted,
            "validation": self.validation,
            "calibration_curve": self.calibration_curve,
            "fairness": self.fairness.to_dict() if self.fairness else None,
        }


@dataclass
class MonitorResult:
    meta: dict[str, Any]
    verdict: Verdict
    reasons: list[Reason]
    notes: list[str]
    features: list[FeatureDrift] | None
    predictions: PredictionDrift
    new_codes: list[NewCodes]
    performance: Performance | None
    by_snapshot: pd.DataFrame
    pending: pd.DataFrame
    figures: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "meta": self.meta,
                "verdict": self.verdict,
                "exit_code": self.exit_code,
                "reasons": [r.to_dict() for r in self.reasons],
                "notes": self.notes,
                "features": None if self.features is None else [f.to_dict() for f in self.features],
                "predictions": self.predictions.to_dict(),
                "new_codes": [c.to_dict() for c in self.new_codes],
                "performance": self.performance.to_dict() if self.performance else None,
                "by_snapshot": self.by_snapshot,
                "pending": self.pending,
            }
        )


def worst(levels: Sequence[str]) -> Verdict:
    """The most serious of the verdicts given (stable when none)."""
    return max(levels, key=VERDICTS.index, default="stable")  # type: ignore[arg-type,return-value]


# ---------------------------------------------------------------- the monitor


def monitor(inp: MonitorInput, limits: MonitorLimits) -> MonitorResult:
    """Every look at one champion, the verdict with its reasons, and the report's figures."""
    _check(inp)
    reasons: list[Reason] = []
    notes: list[str] = []
    drifts = _data(inp, limits, reasons, notes)
    codes = _feed(inp, limits, reasons)
    scores = prediction_drift(inp.p_reference, inp.p_current, inp.bands.cuts, inp.bands.labels)
    reasons += _prediction_reasons(scores, limits.drift)
    performance, by_snapshot = _performance(inp, limits, reasons, notes)
    result = MonitorResult(
        meta=_meta(inp),
        verdict=worst([r.level for r in reasons]),
        reasons=sorted(reasons, key=lambda r: -VERDICTS.index(r.level)),
        notes=notes,
        features=drifts,
        predictions=scores,
        new_codes=list(codes),
        performance=performance,
        by_snapshot=by_snapshot,
        pending=inp.pending,
    )
    result.meta["limits"] = asdict(limits)
    result.figures = _figures(result)
    return result


def _check(inp: MonitorInput) -> None:
    if len(inp.p_current) != len(inp.current):
        raise ValueError(
            f"MonitorInput.p_current has {len(inp.p_current)} scores for {len(inp.current)} people"
        )
    if len(inp.current) == 0:
        raise ValueError(f"MonitorInput.current: nobody is in the {inp.outcome} cohort now")
    if len(inp.y_reference) != len(inp.p_reference) or len(inp.p_reference) == 0:
        raise ValueError("MonitorInput: the validation predictions are empty or misaligned")


def _meta(inp: MonitorInput) -> dict[str, Any]:
    return {
        "outcome": inp.outcome,
        "outcome_words": inp.predicts,
        "cohort": inp.cohort,
        "model_name": inp.model_name,
        "model_version": inp.model_version,
        "run_id": inp.run_id,
        "snapshot_date": inp.snapshot_date.isoformat(),
        "reference_date": inp.reference_date.isoformat(),
        "data_end": inp.data_end.isoformat(),
        "horizon_months": inp.horizon_months,
        "people_now": len(inp.current),
        "people_reference": int(inp.profile["rows"]) if inp.profile else None,
        "bands": {"cuts": list(inp.bands.cuts), "labels": list(inp.bands.labels)},
        "profile": inp.profile is not None,
        "history_days": inp.profile.get("history_days") if inp.profile else None,
        "served": _served(inp),
    }


def _served(inp: MonitorInput) -> dict[str, Any] | None:
    """Mean and band shares of the scores served now, for the report."""
    if inp.p_served is None or len(inp.p_served) == 0:
        return None
    p = np.asarray(inp.p_served, dtype=float)
    bands = pd.Series(inp.bands.band(p)).value_counts().reindex(list(inp.bands.labels))
    return {
        "n": len(p),
        "mean": float(p.mean()),
        "bands": {k: int(v) for k, v in bands.fillna(0).items()},
    }


# ---------------------------------------------------------------- data and feed


def _data(
    inp: MonitorInput, limits: MonitorLimits, reasons: list[Reason], notes: list[str]
) -> list[FeatureDrift] | None:
    if inp.profile is None:
        reasons.append(
            Reason(
                "watch",
                "data",
                f"feature drift was not checked: run {inp.run_id[:8]} logged no reference "
                "profile (it was trained before runs logged one); retrain to monitor its data",
            )
        )
        return None
    drifts = feature_drift(inp.profile, inp.current, inp.features, limits.drift)
    alpha = limits.drift.significance / max(len(drifts), 1)
    for d in drifts:
        reasons += _feature_reasons(d, limits.drift, alpha)
    if not any(r.area == "data" for r in reasons):
        notes.append(f"No feature moved beyond the limits ({len(drifts)} features compared).")
    return drifts


def _feature_reasons(d: FeatureDrift, lim: DriftLimits, alpha: float) -> list[Reason]:
    out: list[Reason] = []
    name = f"{d.label} ({d.name})"
    if d.psi >= lim.psi_watch and d.p_value < alpha:
        level: Verdict = "retrain" if d.psi >= lim.psi_retrain else "watch"
        out.append(Reason(level, "data", f"{name} shifted: PSI {d.psi:.2f} (p {_p(d.p_value)})"))
    shift = abs(d.missing_shift)
    if shift >= lim.missing_shift_watch and d.missing_p_value < alpha:
        level = "retrain" if shift >= lim.missing_shift_retrain else "watch"
        out.append(
            Reason(
                level,
                "data",
                f"{name} is missing for {d.missing_current:.1%} of people, against "
                f"{d.missing_reference:.1%} at the validation date",
            )
        )
    if d.new_share >= lim.new_level_share_watch:
        levels = ", ".join(f"{k} ({v:,})" for k, v in list(d.new_levels.items())[:5])
        words = f"{d.new_share:.1%} of people have a value never seen in training: {levels}"
        out.append(Reason("watch", "data", f"{name}: {words}"))
    if d.groups and not out:  # a shift of the whole population shows in every group
        where = "; ".join(
            f"{g.descriptor} = {g.group} ({g.n_current:,} people): PSI {g.psi:.2f} "
            f"(p {_p(g.p_value)})"
            for g in d.groups
        )
        out.append(Reason("watch", "data", f"{name} shifted within {where}"))
    return out


def _feed(inp: MonitorInput, limits: MonitorLimits, reasons: list[Reason]) -> list[NewCodes]:
    for item in inp.new_codes:
        if item.rows < limits.new_code_min_rows:
            continue
        top = ", ".join(f"{c} ({n:,})" for c, n in list(item.codes.items())[:5])
        reasons.append(
            Reason(
                "watch",
                "feed",
                f"{item.table}.{item.column}: {len(item.codes):,} code(s) never recorded before "
                f"{inp.reference_date} appear in {item.rows:,} rows ({item.share:.1%} of the rows "
                f"since): {top}. No code list holds them (codelists/): a list may be missing them",
            )
        )
    return list(inp.new_codes)


def _prediction_reasons(d: PredictionDrift, lim: DriftLimits) -> list[Reason]:
    out = []
    if d.band_psi >= lim.psi_watch and d.band_p_value < lim.significance:
        level: Verdict = "retrain" if d.band_psi >= lim.psi_retrain else "watch"
        shares = ", ".join(
            f"{b} {_frac(c, d.current_bands):.1%} (was {_frac(r, d.reference_bands):.1%})"
            for b, c, r in zip(d.bands, d.current_bands, d.reference_bands, strict=True)
        )
        out.append(
            Reason(level, "predictions", f"band shares moved: PSI {d.band_psi:.2f}; {shares}")
        )
    change = abs(d.mean_change)
    if change >= lim.mean_risk_change_watch and d.mean_p_value < lim.significance:
        level = "retrain" if change >= lim.mean_risk_change_retrain else "watch"
        out.append(
            Reason(
                level,
                "predictions",
                f"mean predicted risk {d.mean_current:.1%} against {d.mean_reference:.1%} at the "
                f"validation date ({d.mean_change:+.0%})",
            )
        )
    return out


def _frac(n: int, counts: Sequence[int]) -> float:
    total = sum(counts)
    return n / total if total else math.nan


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


# ---------------------------------------------------------------- realised performance


def slope_interval(y: np.ndarray, p: np.ndarray, level: float) -> tuple[Interval, float]:
    """Calibration slope with its Wald interval (evaluation.metrics), and the refit's
    intercept."""
    slope, low, high = m.calibration_slope_interval(y, p, level)
    return Interval(slope, low, high), m.calibration_slope(y, p)[1]


def oe_interval(y: np.ndarray, p: np.ndarray, level: float) -> Interval:
    observed, expected = float(np.sum(y)), float(np.sum(p))
    lo, hi = poisson_ratio_interval(np.array([observed]), np.array([expected]), level)
    return Interval(observed / expected, float(lo[0]), float(hi[0]))


def _by_snapshot(matured: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per (snapshot date, model version): people, events, AUROC and O/E with its interval."""
    rows = []
    for (day, version), part in matured.groupby(["snapshot_date", "model_version"], sort=True):
        y, p = part["label"].to_numpy(int), part["probability"].to_numpy(float)
        oe = oe_interval(y, p, level)
        rows.append(
            {
                "snapshot_date": str(day),
                "model_version": str(version),
                "n": len(part),
                "events": int(y.sum()),
                "observed_rate": float(y.mean()),
                "mean_predicted": float(p.mean()),
                "auroc": m.auroc(y, p) if 0 < y.sum() < len(y) else math.nan,
                "oe": oe.value,
                "oe_lo": oe.lo,
                "oe_hi": oe.hi,
            }
        )
    return pd.DataFrame(rows)


def _performance(
    inp: MonitorInput, limits: MonitorLimits, reasons: list[Reason], notes: list[str]
) -> tuple[Performance | None, pd.DataFrame]:
    matured = inp.matured
    by_snapshot = _by_snapshot(matured, limits.ci_level) if len(matured) else pd.DataFrame()
    for day, lost in inp.unmatched.items():
        if lost:
            notes.append(
                f"{lost:,} people scored on {day} are no longer in the store (retired by a later "
                "extract): left out of the realised performance"
            )
    own = (
        matured[matured["model_version"].astype(str) == str(inp.model_version)]
        if len(matured)
        else matured
    )
    others = len(matured) - len(own)
    if others:
        notes.append(
            f"{others:,} matured scores came from other versions of {inp.model_name}: shown by "
            "snapshot, not judged"
        )
    if len(own) == 0:
        notes.append(_nothing_matured(inp))
        return None, by_snapshot
    y, p = own["label"].to_numpy(int), own["probability"].to_numpy(float)
    events = int(y.sum())
    if min(events, len(y) - events) < limits.min_matured_events:
        notes.append(
            f"{len(y):,} matured scores of this version, {events:,} with the outcome: fewer than "
            f"{limits.min_matured_events} events or non-events, so performance is shown, not judged"
        )
        return None, by_snapshot
    perf = _measure(inp, own, y, p, limits)
    reasons += _performance_reasons(perf, limits)
    return perf, by_snapshot


def _nothing_matured(inp: MonitorInput) -> str:
    if len(inp.pending):
        first = min(
            inp.pending.loc[
                inp.pending["model_version"].astype(str) == inp.model_version, "matures"
            ],
            default=None,
        )
        if first is not None:
            return (
                f"No score of this version has matured yet: the first ({inp.horizon_months}-month "
                f"horizon) can be judged once the data reach {first}"
            )
    return (
        "No score of this version is in the scores history with a horizon that has passed; "
        "run `carerisk score-all` at each snapshot so that it can be judged later"
    )


def _measure(
    inp: MonitorInput, own: pd.DataFrame, y: np.ndarray, p: np.ndarray, limits: MonitorLimits
) -> Performance:
    slope, _ = slope_interval(y, p, limits.ci_level)
    groups = own[[c for c in FAIRNESS_GROUPS if c in own.columns]].reset_index(drop=True)
    left_out = left_out_descriptors(inp.coverage)
    fairness = subgroup_table(y, p, groups, inp.operating_threshold, limits.fairness(), left_out)
    ry, rp = np.asarray(inp.y_reference, int), np.asarray(inp.p_reference, float)
    return Performance(
        n=len(y),
        events=int(y.sum()),
        snapshots=sorted({str(d) for d in own["snapshot_date"]}),
        auroc=m.discrimination(y, p, limits.n_boot, limits.seed, limits.ci_level)["auroc"],
        slope=slope,
        oe=oe_interval(y, p, limits.ci_level),
        observed_rate=float(y.mean()),
        mean_predicted=float(p.mean()),
        validation={
            "auroc": m.auroc(ry, rp),
            "slope": m.calibration_slope(ry, rp)[0],
            "oe": float(ry.sum() / rp.sum()),
            "n": float(len(ry)),
        },
        calibration_curve=m.calibration_curve(y, p, level=limits.ci_level),
        fairness=fairness,
    )


def _performance_reasons(perf: Performance, limits: MonitorLimits) -> list[Reason]:
    out: list[Reason] = []
    auc, ref = perf.auroc, perf.validation["auroc"]
    text = (
        f"realised AUROC {auc.value:.3f} ({auc.lo:.3f} to {auc.hi:.3f}) against {ref:.3f} at "
        "the validation date"
    )
    if auc.hi < ref - limits.auroc_drop_retrain:
        out.append(Reason("retrain", "performance", text))
    elif auc.value < ref - limits.auroc_drop_watch:
        out.append(Reason("watch", "performance", text))
    for name, iv, rule in (
        ("calibration slope", perf.slope, limits.slope_rule),
        ("observed / expected", perf.oe, limits.oe_rule),
    ):
        refused = rule.refusal(iv.value, iv.lo, iv.hi)
        if refused:
            words = f"realised {name} {iv.value:.2f} ({iv.lo:.2f} to {iv.hi:.2f}): {refused}"
            out.append(Reason("retrain", "performance", words))
    flags = [f for f in perf.fairness.flags if f.blocking] if perf.fairness else []
    if flags:
        named = "; ".join(f.reason for f in flags[:3])
        more = f"; and {len(flags) - 3} more (see the tables)" if len(flags) > 3 else ""
        out.append(Reason("watch", "performance", f"{len(flags)} group flag(s): {named}{more}"))
    return out


# ---------------------------------------------------------------- figures


def _figures(r: MonitorResult) -> dict[str, dict[str, str]]:
    figs: dict[str, tuple[str, str]] = {}
    if r.features:
        lim = r.meta["limits"]["drift"]
        top = sorted(r.features, key=lambda d: -d.psi)[:15]
        figs["psi"] = (
            plots.psi_plot(
                [d.label for d in top], [d.psi for d in top], lim["psi_watch"], lim["psi_retrain"]
            ),
            "Population stability index of the 15 most shifted features, with the watch and "
            "retrain limits: " + ", ".join(f"{d.label} {d.psi:.2f}" for d in top[:5]),
        )
        for d in top[:FIGURE_FEATURES]:
            if d.psi >= lim["psi_watch"] or d.groups:
                figs[f"feature_{d.name}"] = (
                    plots.shares_plot(d.bins, d.reference, d.current, d.label),
                    f"{d.label}: share of people in each bin at the validation date and now",
                )
    pred = r.predictions
    figs["bands"] = (
        plots.shares_plot(pred.bands, pred.reference_bands, pred.current_bands, "risk band"),
        "Share of people in each risk band at the validation date and now: "
        + ", ".join(
            f"{b} {_frac(c, pred.current_bands):.1%} (was {_frac(v, pred.reference_bands):.1%})"
            for b, c, v in zip(pred.bands, pred.current_bands, pred.reference_bands, strict=True)
        ),
    )
    if r.performance is not None:
        figs["calibration"] = (
            plots.calibration_plot(r.performance.calibration_curve),
            "Realised calibration of the matured scores: observed rate against mean predicted "
            "risk in ten equal-sized groups, with 95% intervals",
        )
        f = r.performance.fairness
        if f is not None and not f.table.empty:
            figs["forest_oe"] = (
                plots.forest_plot(
                    f.table, "oe_ratio", "observed / expected", f.overall["oe_ratio"].value
                ),
                "Realised observed / expected by group with exact Poisson intervals",
            )
    return {k: {"uri": uri, "alt": alt} for k, (uri, alt) in figs.items()}


# ---------------------------------------------------------------- HTML and files


def render_html(result: MonitorResult) -> str:
    """The monitor report as one self-contained page: inline CSS, embedded images, no scripts."""
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    fairness = result.performance.fairness if result.performance else None
    return (
        _environment()
        .get_template("monitor.html")
        .render(
            r=result,
            css=css,
            sections=SECTIONS,
            fairness_rows=fairness.table.to_dict(orient="records") if fairness else [],
            descriptors=list(fairness.table["descriptor"].drop_duplicates()) if fairness else [],
            by_snapshot=result.by_snapshot.to_dict(orient="records"),
            pending=result.pending.to_dict(orient="records"),
        )
    )


def write_monitor_report(result: MonitorResult, out_dir: Path) -> tuple[Path, Path]:
    """Write <model>-v<version>-monitor-<snapshot date>.html and .json; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(result.meta["model_name"], result.meta["model_version"])
    stem = f"{stem}-monitor-{result.meta['snapshot_date']}"
    html, js = out_dir / f"{stem}.html", out_dir / f"{stem}.json"
    html.write_text(render_html(result), encoding="utf-8")
    js.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
    return html, js
