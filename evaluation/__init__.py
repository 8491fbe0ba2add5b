"""Evaluation: metrics, subgroup tables, decision curves, explanations, the report and model card.

Public API:
    evaluate(inp, limits, gate=None) -> EvaluationResult
    render_html(result) -> str;  write_report(result, out_dir) -> (html_path, json_path)
    subgroup_checks(result, limits) -> list[Check]   (called by the promotion gate)
"""

from evaluation.fairness import PRIORITISED_PROPERTY, FairnessResult, subgroup_checks
from evaluation.inputs import Check, EvaluationInput, FairnessLimits
from evaluation.report import EvaluationResult, evaluate, render_html, write_report

__all__ = [
    "PRIORITISED_PROPERTY",
    "Check",
    "EvaluationInput",
    "EvaluationResult",
    "FairnessLimits",
    "FairnessResult",
    "evaluate",
    "render_html",
    "subgroup_checks",
    "write_report",
]
