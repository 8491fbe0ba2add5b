"""The evaluation: all numbers in one result, a self-contained HTML report and a JSON file."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from evaluation import metrics as m
from evaluation import plots
from evaluation.explain import ExplanationResult, explain
from evaluation.fairness import (
    ERROR_RATE_METRICS,
    METRIC_LABELS,
    PRIORITISED_PROPERTY,
    FairnessResult,
    subgroup_checks,
    subgroup_table,
)
from evaluation.inputs import Check, EvaluationInput, FairnessLimits, validated
from features.coverage import card_lines, left_out_descriptors

TEMPLATES = Path(__file__).parent / "templates"
SECTIONS = (
    ("summary", "1. Summary"),
    ("discrimination", "2. Discrimination"),
    ("calibration", "3. Calibration"),
    ("capacity", "4. Use at capacity and decision curves"),
    ("fairness", "5. Fairness"),
    ("explanations", "6. Explanations"),
    ("truth", "7. Against the truth"),
    ("model-card", "8. Model card"),
)


@dataclass
class EvaluationResult:
    """Every number of an evaluation; figures are kept for the HTML but left out of the JSON."""

    meta: dict[str, Any]
    discrimination: dict[str, dict[str, m.Estimate]]
    calibration: dict[str, dict[str, float]]
    calibration_curve: pd.DataFrame
    decision_curve: pd.DataFrame
    operating_point: dict[str, dict[str, float]]
    capacity_bands: pd.DataFrame
    capacity_top: pd.DataFrame
    capacity_year: dict[str, float] | None
    fairness: FairnessResult
    checks: list[Check]
    explanations: ExplanationResult | None = None
    truth: dict[str, Any] | None = None
    competing_risk: dict[str, Any] | None = None
    summary: list[str] = field(default_factory=list)
    figures: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "meta": self.meta,
            "passed": self.passed,
            "summary": self.summary,
            "discrimination": self.discrimination,
            "calibration": self.calibration,
            "calibration_curve": self.calibration_curve,
            "decision_curve": self.decision_curve,
            "operating_point": self.operating_point,
            "capacity_bands": self.capacity_bands,
            "capacity_top": self.capacity_top,
            "capacity_year": self.capacity_year,
            "fairness": self.fairness.to_dict(),
            "checks": self.checks,
            "explanations": self.explanations.to_dict() if self.explanations else None,
            "truth": self.truth,
            "competing_risk": self.competing_risk,
        }
        return jsonable(out)


def jsonable(obj: Any) -> Any:
    """Plain JSON types: DataFrames to records, numpy to Python, NaN to None."""
    if isinstance(obj, pd.DataFrame):
        return jsonable(obj.to_dict(orient="records"))
    if hasattr(obj, "to_dict") and not isinstance(obj, dict):
        return jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str | int | bool) or obj is None:
        return obj
    return str(obj)


# ---------------------------------------------------------------- evaluate


def _scores(inp: EvaluationInput) -> dict[str, np.ndarray]:
    scores = {"model": inp.p_model, "baseline": inp.p_baseline}
    if inp.p_champion is not None:
        scores[inp.champion_label] = inp.p_champion
    if inp.p_true is not None:
        scores["true risk"] = inp.p_true
    if inp.p_reference is not None:
        scores["records reference"] = inp.p_reference
    return scores


def _calibration(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    difference, offset_intercept = m.calibration_in_the_large(y, p)
    slope, intercept = m.calibration_slope(y, p)
    return {
        "observed_rate": float(np.mean(y)),
        "mean_predicted": float(np.mean(p)),
        "citl_difference": difference,
        "citl_intercept": offset_intercept,
        "slope_intercept": intercept,
        "slope": slope,
        "ece": m.expected_calibration_error(y, p),
        "brier": m.brier(y, p),
    }


def _decision(y: np.ndarray, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    frames = {name: m.decision_curve(y, p) for name, p in scores.items()}
    first = next(iter(frames.values()))
    out = first[["threshold", "treat_all", "treat_none"]].copy()
    for name, frame in frames.items():
        out[name] = frame["model"].to_numpy()
    return out


def _meta(inp: EvaluationInput, threshold: float) -> dict[str, Any]:
    y = inp.y
    return {
        "outcome": inp.outcome,
        "outcome_words": inp.predicts,
        "model_name": inp.model_name,
        "model_version": inp.model_version,
        "cohort": inp.cohort,
        "train_index_dates": [str(d) for d in inp.train_index_dates],
        "validation_index_dates": [str(d) for d in inp.validation_index_dates],
        "n": int(len(y)),
        "events": int(y.sum()),
        "prevalence": float(y.mean()),
        "threshold": threshold,
        "threshold_kind": inp.threshold_kind,
        "threshold_value": inp.operating_threshold,
        "bands": {"cuts": list(inp.bands.cuts), "labels": list(inp.bands.labels)},
        "monthly_capacity": inp.monthly_capacity,
        "capacity_unit": inp.capacity_unit,
        "synthetic": inp.p_true is not None,
        "groups": list(inp.groups.columns),
        "training_sample": inp.training_sample,
        "code_lists": inp.code_lists,
        "coverage": card_lines(inp.coverage),
    }


def _truth(inp: EvaluationInput, disc: dict[str, dict[str, m.Estimate]], cal) -> dict[str, Any]:
    assert inp.p_true is not None
    model, true = disc["model"], disc["true risk"]
    reference = disc.get("records reference")
    return {
        "reference": _reference(model, reference, cal) if reference else None,
        "auroc_model": model["auroc"].value,
        "auroc_true": true["auroc"].value,
        "auroc_gap": model["auroc"].value - true["auroc"].value,
        "brier_model": model["brier"].value,
        "brier_true": true["brier"].value,
        "brier_gap": model["brier"].value - true["brier"].value,
        "slope_model": cal["model"]["slope"],
        "slope_true": cal["true risk"]["slope"],
        "mean_abs_difference": float(np.mean(np.abs(inp.p_model - inp.p_true))),
        "correlation": float(np.corrcoef(inp.p_model, inp.p_true)[0, 1]),
    }


def _reference(
    model: dict[str, m.Estimate], reference: dict[str, m.Estimate], cal: Any
) -> dict[str, Any]:
    """The records reference: the pass criterion on synthetic data (what a model reading every
    record perfectly could know); the truth also holds what no record shows."""
    return {
        "auroc": reference["auroc"].value,
        "auroc_gap": model["auroc"].value - reference["auroc"].value,
        "brier": reference["brier"].value,
        "brier_gap": model["brier"].value - reference["brier"].value,
        "slope": cal["records reference"]["slope"],
    }


def _competing_risk(inp: EvaluationInput, threshold: float) -> dict[str, Any] | None:
    if inp.died_before_event is None:
        return None
    died = inp.died_before_event.astype(bool)
    flagged = inp.p_model >= threshold
    return {
        "died_before_event": int(died.sum()),
        "share": float(died.mean()),
        "share_among_flagged": float(died[flagged].mean()) if flagged.any() else math.nan,
        "statement": (
            f"{int(died.sum()):,} people ({died.mean():.1%}) died during follow-up before any "
            f"outcome; among those flagged at the operating threshold the share was "
            f"{(died[flagged].mean() if flagged.any() else math.nan):.1%}. Death ends "
            "follow-up: these people count as having no event, so the model estimates the risk "
            "of a recorded outcome while alive, not the risk had they survived."
        ),
    }


def _explanations(inp: EvaluationInput) -> ExplanationResult | None:
    if inp.shap_values is None or inp.feature_values is None:
        return None
    return explain(inp.shap_values, inp.feature_values, inp.features, inp.outcome)


def evaluate(
    inp: EvaluationInput, limits: FairnessLimits, gate: Sequence[Check] | None = None
) -> EvaluationResult:
    """All metrics, subgroup tables, explanations, checks and figures for one model."""
    inp = validated(inp)
    y = inp.y
    threshold = m.threshold_for(inp.p_model, inp.operating_threshold, inp.threshold_kind)
    scores = _scores(inp)
    disc = {
        name: m.discrimination(y, p, limits.n_boot, limits.seed, limits.ci_level)
        for name, p in scores.items()
    }
    cal = {name: _calibration(y, p) for name, p in scores.items()}
    left_out = left_out_descriptors(inp.coverage)
    fairness = subgroup_table(y, inp.p_model, inp.groups, threshold, limits, left_out)
    checks = [*(gate or []), *subgroup_checks(fairness, limits)]
    result = EvaluationResult(
        meta=_meta(inp, threshold),
        discrimination=disc,
        calibration=cal,
        calibration_curve=m.calibration_curve(y, inp.p_model, level=limits.ci_level),
        decision_curve=_decision(y, scores),
        operating_point={name: m.confusion_rates(y, p, threshold) for name, p in scores.items()},
        capacity_bands=m.capacity_by_band(y, inp.p_model, inp.bands),
        capacity_top=m.capacity_by_top(y, inp.p_model),
        capacity_year=m.capacity_year(y, inp.p_model, inp.monthly_capacity)
        if inp.monthly_capacity
        else None,
        fairness=fairness,
        checks=checks,
        explanations=_explanations(inp),
        truth=_truth(inp, disc, cal) if inp.p_true is not None else None,
        competing_risk=_competing_risk(inp, threshold),
    )
    result.meta["limits"] = asdict(limits)
    result.summary = summary_sentences(result)
    result.figures = _figures(result, inp, scores)
    return result


# ---------------------------------------------------------------- words


def _ci(e: m.Estimate, digits: int = 3) -> str:
    return f"{e.value:.{digits}f} ({e.lo:.{digits}f} to {e.hi:.{digits}f})"


def summary_sentences(r: EvaluationResult) -> list[str]:
    meta, disc, cal = r.meta, r.discrimination, r.calibration["model"]
    out = [
        f"This report checks model {meta['model_name']} version {meta['model_version']}, which "
        f"estimates the chance of {meta['outcome_words']}, for the cohort '{meta['cohort']}'. "
        f"It was trained on index dates {', '.join(meta['train_index_dates'])} and is tested "
        f"here on {meta['n']:,} people at index dates "
        f"{', '.join(meta['validation_index_dates'])}, of whom {meta['events']:,} "
        f"({meta['prevalence']:.1%}) had the outcome.",
        f"Ranking: AUROC {_ci(disc['model']['auroc'])}, against "
        f"{disc['baseline']['auroc'].value:.3f} for the logistic baseline "
        "(0.5 is chance, 1 is perfect ranking).",
        f"Calibration: {cal['mean_predicted']:.1%} predicted on average against "
        f"{cal['observed_rate']:.1%} observed; calibration slope {cal['slope']:.2f} (1 is ideal).",
    ]
    top = r.capacity_top
    five = top[np.isclose(top["top_fraction"], 0.05)]
    if len(five):
        row = five.iloc[0]
        out.append(
            f"Flagging the highest-risk 5% ({int(row['flagged']):,} people) finds "
            f"{row['sensitivity']:.0%} of all events; {row['ppv']:.0%} of those flagged have one."
        )
    if r.capacity_year:
        cy = r.capacity_year
        out.append(
            f"If the service can visit {int(cy['monthly_capacity']):,} {meta['capacity_unit']} a "
            f"month, the {int(cy['people_visited']):,} highest-ranked people over a year include "
            f"{int(cy['events_among_visited']):,} of the {int(cy['total_events']):,} events "
            f"({cy['share_of_all_events']:.0%})."
        )
    failed = [c for c in r.checks if not c.passed]
    if failed:
        out.append(
            f"{len(failed)} of {len(r.checks)} checks failed: "
            + "; ".join(f"{c.name}: {c.reason}" for c in failed)
        )
    else:
        out.append(f"All {len(r.checks)} gate and fairness checks passed.")
    return out


# ---------------------------------------------------------------- figures


def _figures(
    r: EvaluationResult, inp: EvaluationInput, scores: dict[str, np.ndarray]
) -> dict[str, dict[str, str]]:
    y = inp.y
    aucs = {k: v["auroc"].value for k, v in r.discrimination.items()}
    dc = r.decision_curve
    figs = {
        "roc": (
            plots.roc_plot({k: m.roc_points(y, p) for k, p in scores.items()}, aucs),
            "ROC curves of " + ", ".join(f"{k} (AUROC {v:.3f})" for k, v in aucs.items()),
        ),
        "pr": (
            plots.pr_plot({k: m.pr_points(y, p) for k, p in scores.items()}, float(y.mean())),
            "Precision against recall for " + ", ".join(scores),
        ),
        "calibration": (
            plots.calibration_plot(r.calibration_curve, m.calibration_curve(y, inp.p_baseline)),
            "Observed rate against mean predicted risk in ten equal-sized groups, with 95% "
            "intervals; points on the diagonal are well calibrated",
        ),
        "decision": (
            plots.decision_plot(
                {
                    k: dc.assign(model=dc[k])[["threshold", "model", "treat_all", "treat_none"]]
                    for k in scores
                }
            ),
            "Net benefit against threshold probability for each model, treat all and treat none",
        ),
        "capacity": (
            plots.capacity_plot(r.capacity_top),
            "Share of all events found and PPV when flagging the top 1, 2, 5, 10 and 20 percent",
        ),
    }
    figs.update(_fairness_figures(r.fairness, r))
    figs.update(_explanation_figures(r, inp))
    return {k: {"uri": uri, "alt": alt} for k, (uri, alt) in figs.items()}


def _fairness_figures(f: FairnessResult, r: EvaluationResult) -> dict[str, tuple[str, str]]:
    if f.table.empty:
        return {}
    out = {}
    for metric in ("oe_ratio", "auroc", *ERROR_RATE_METRICS):
        label = METRIC_LABELS[metric]
        out[f"forest_{metric}"] = (
            plots.forest_plot(f.table, metric, label, f.overall[metric].value),
            f"Forest plot of {label} for every group with its 95% bootstrap interval; the "
            f"dashed line is the overall value {f.overall[metric].value:.2f}",
        )
    return out


def _explanation_figures(r: EvaluationResult, inp: EvaluationInput) -> dict[str, tuple[str, str]]:
    if r.explanations is None or inp.shap_values is None or inp.feature_values is None:
        return {}
    table = r.explanations.table
    top = table.head(12)
    labels = dict(zip(table["name"], table["label"], strict=True))
    return {
        "importance": (
            plots.importance_plot(table),
            "Mean absolute SHAP value per feature: "
            + ", ".join(
                f"{a} {b:.3f}" for a, b in zip(top["label"], top["mean_abs_shap"], strict=True)
            ),
        ),
        "beeswarm": (
            plots.beeswarm_plot(inp.shap_values, inp.feature_values, list(top["name"]), labels),
            "SHAP value per person for the 12 most important features, coloured from low "
            "(dark) to high (yellow) feature value",
        ),
    }


# ---------------------------------------------------------------- HTML and files


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.{digits}%}"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _fmt
    env.filters["pct"] = _pct
    return env


def render_html(result: EvaluationResult) -> str:
    """The report as one self-contained HTML page: inline CSS, embedded images, no scripts."""
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    table = result.fairness.table
    return (
        _environment()
        .get_template("report.html")
        .render(
            r=result,
            css=css,
            sections=SECTIONS,
            prioritised=PRIORITISED_PROPERTY,
            metric_labels=METRIC_LABELS,
            fairness_rows=table.to_dict(orient="records"),
            descriptors=list(table["descriptor"].drop_duplicates()) if len(table) else [],
            limits_min_n=_min_group_size(result),
            explanation_rows=result.explanations.table.to_dict(orient="records")
            if result.explanations
            else [],
        )
    )


def _min_group_size(result: EvaluationResult) -> int:
    return int(result.meta.get("limits", {}).get("min_group_size", 0))


def report_stem(model_name: str, version: object) -> str:
    """The report files' name: `carerisk-falls-v3` for a registered version, and for a model
    not registered yet (its version reads "run e38f5405") `carerisk-falls-run-e38f5405`."""
    text = str(version).strip()
    label = f"v{text}" if text.isdigit() else text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model_name}-{label}").strip("-.")


def write_report(result: EvaluationResult, out_dir: Path) -> tuple[Path, Path]:
    """Write <stem>.html and <stem>.json into out_dir (`report_stem`); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(result.meta["model_name"], result.meta["model_version"])
    html_path = out_dir / f"{stem}.html"
    json_path = out_dir / f"{stem}.json"
    html_path.write_text(render_html(result), encoding="utf-8")
    json_path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
    return html_path, json_path
