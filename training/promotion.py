"""The promotion gate: a challenger becomes champion only if it holds up on the same people."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from evaluation import Check
from evaluation.metrics import CalibrationRule, calibration_slope_interval
from features.outcomes import Outcome
from models.registered import CHALLENGER, CHAMPION
from training.config import GateConfig
from training.tracking import CHECKS_DIR, PREDICTIONS_ARTIFACT, client_for, version_by_alias
from training.validation_metrics import observed_expected, paired_bootstrap_auroc_difference


class PromotionError(RuntimeError):
    """There is nothing to promote, or the gate could not be run."""


@dataclass(frozen=True)
class GateContext:
    """What an extra check may look at."""

    outcome: str
    challenger_run_id: str
    champion_run_id: str | None
    challenger: pd.DataFrame  # validation predictions: person_id, index_date, y, p
    champion: pd.DataFrame | None
    client: MlflowClient


ExtraCheck = Callable[[GateContext], tuple[str, bool, str]]


@dataclass(frozen=True)
class GateVerdict:
    outcome: str
    model_name: str
    challenger_version: str
    champion_version: str | None  # the champion the challenger was compared with
    passed: bool
    promoted: bool
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def reasons(self) -> list[str]:
        """The failed checks in words (empty when passed)."""
        return [f"{c.name}: {c.reason}" for c in self.checks if not c.passed]

    def summary(self) -> str:
        head = "promoted" if self.promoted else ("passed" if self.passed else "refused")
        lines = [f"{self.model_name} version {self.challenger_version}: {head}"]
        lines += [f"[{'pass' if c.passed else 'FAIL'}] {c.name}: {c.reason}" for c in self.checks]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "model_name": self.model_name,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "passed": self.passed,
            "promoted": self.promoted,
            "checks": [c.to_dict() for c in self.checks],
            "reasons": self.reasons,
        }


def promote(
    outcome: Outcome,
    tracking_uri: str,
    *,
    gate: GateConfig | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
    seed: int = 0,
) -> GateVerdict:
    """Gate the challenger against the champion; move alias champion only if every check passes."""
    gate = gate or GateConfig()
    client = client_for(tracking_uri)
    name = outcome.model_name
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise PromotionError(f"{name} has no version with alias {CHALLENGER}; train first")
    champion = version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        check = Check("already champion", True, f"version {champion.version} is champion")
        return GateVerdict(
            outcome.name, name, challenger.version, champion.version, True, False, (check,)
        )
    if not challenger.run_id:
        raise PromotionError(f"{name} version {challenger.version} has no training run")
    context = _context(
        client, outcome.name, challenger.run_id, champion.run_id if champion else None
    )
    checks = _run_checks(context, gate, extra_checks, seed)
    passed = all(c.passed for c in checks)
    verdict = GateVerdict(
        outcome=outcome.name,
        model_name=name,
        challenger_version=str(challenger.version),
        champion_version=str(champion.version) if champion else None,
        passed=passed,
        promoted=passed,
        checks=tuple(checks),
    )
    _record(client, verdict)
    if passed:
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
    return verdict


def _context(
    client: MlflowClient, outcome: str, challenger_run: str, champion_run: str | None
) -> GateContext:
    return GateContext(
        outcome=outcome,
        challenger_run_id=challenger_run,
        champion_run_id=champion_run,
        challenger=load_predictions(client, challenger_run),
        champion=load_predictions(client, champion_run) if champion_run else None,
        client=client,
    )


def load_predictions(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """The validation predictions a training run logged."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, tmp)
        except Exception as error:  # mlflow raises several types for a missing artifact
            raise PromotionError(f"run {run_id} has no {PREDICTIONS_ARTIFACT}: {error}") from error
        return pd.read_parquet(path)


def _run_checks(
    context: GateContext, gate: GateConfig, extra_checks: Sequence[ExtraCheck], seed: int
) -> list[Check]:
    checks = [
        calibration_check(context.challenger, gate),
        observed_expected_check(context.challenger, gate),
        baseline_check(context.challenger, gate, seed),
    ]
    if context.champion is not None:
        checks.append(auroc_check(context.challenger, context.champion, gate, seed))
    checks += logged_checks(context.client, context.challenger_run_id)
    for extra in extra_checks:
        try:
            name, passed, reason = extra(context)
        except Exception as error:  # a broken check refuses, it never passes silently
            name, passed, reason = getattr(extra, "__name__", "extra check"), False, repr(error)
        checks.append(Check(str(name), bool(passed), str(reason)))
    return checks


def calibration_check(predictions: pd.DataFrame, gate: GateConfig) -> Check:
    """The calibration slope on the validation people, with its Wald interval, judged by the
    gate's slope rule."""
    y, p = predictions["y"].to_numpy(), predictions["p"].to_numpy()
    slope, low, high = calibration_slope_interval(y, p, gate.confidence)
    return _judged("calibration slope", gate.slope_rule(), slope, low, high, gate.confidence)


def observed_expected_check(predictions: pd.DataFrame, gate: GateConfig) -> Check:
    """Calibration in the large: observed over expected events on the validation people, with
    its exact (Poisson) interval, judged by the gate's observed/expected rule."""
    y, p = predictions["y"].to_numpy(), predictions["p"].to_numpy()
    ratio, low, high = observed_expected(y, p, gate.confidence)
    check = _judged("observed/expected", gate.observed_expected_rule(), ratio, low, high,
                    gate.confidence)  # fmt: skip
    counts = f"; {int(y.sum())} events, {p.sum():.1f} expected"
    return Check(check.name, check.passed, check.reason + counts)


def _judged(
    name: str, rule: CalibrationRule, value: float, low: float, high: float, confidence: float
) -> Check:
    refused = rule.refusal(value, low, high)
    figure = f"{name} {value:.3f} ({confidence:.0%} interval {low:.3f} to {high:.3f})"
    return Check(name, refused is None, f"{figure}: {refused or rule.words()}")


def baseline_check(predictions: pd.DataFrame, gate: GateConfig, seed: int) -> Check:
    """The challenger against its own logistic baseline, fitted on the same rows and measured on
    the same people: a boosted model worse than the simple one by more than the gate's
    tolerance never reaches practitioners. The difference itself is judged, with its interval
    logged: the interval's lower end (what the champion check uses) would refuse any model on a
    small county (the 4,000-person test home: +0.039, -0.054 to +0.115), and "the whole
    interval below zero" refuses a falls model 0.0024 behind at 600,000 people (-0.0044 to
    -0.0006), well inside the tolerance the champion check allows."""
    diff, low, high = paired_bootstrap_auroc_difference(
        predictions["y"].to_numpy(),
        predictions["p"].to_numpy(),
        predictions["p_baseline"].to_numpy(),
        replicates=gate.bootstrap_replicates,
        confidence=gate.confidence,
        seed=seed,
    )
    passed = diff >= -gate.auroc_tolerance
    reason = (
        f"AUROC minus the logistic baseline's {diff:+.4f} ({gate.confidence:.0%} interval "
        f"{low:+.4f} to {high:+.4f}) on {len(predictions)} people; refused when below "
        f"{-gate.auroc_tolerance:+.4f}"
    )
    return Check("AUROC vs logistic baseline", passed, reason)


def auroc_check(
    challenger: pd.DataFrame, champion: pd.DataFrame, gate: GateConfig, seed: int
) -> Check:
    """Paired bootstrap on the people both models were validated on."""
    keys = ["person_id", "index_date"]
    shared = challenger.merge(champion, on=keys, suffixes=("_new", "_old"), validate="one_to_one")
    if shared.empty:
        return Check("AUROC vs champion", False, "no validation people in common")
    disagree = shared["y_new"] != shared["y_old"]
    if disagree.any():
        row = shared.loc[disagree].iloc[0]
        reason = f"labels differ for person {row['person_id']} at {row['index_date']}"
        return Check("AUROC vs champion", False, reason)
    diff, low, high = paired_bootstrap_auroc_difference(
        shared["y_new"].to_numpy(),
        shared["p_new"].to_numpy(),
        shared["p_old"].to_numpy(),
        replicates=gate.bootstrap_replicates,
        confidence=gate.confidence,
        seed=seed,
    )
    passed = low > -gate.auroc_tolerance
    reason = (
        f"AUROC difference {diff:+.4f} ({gate.confidence:.0%} interval {low:+.4f} to {high:+.4f}) "
        f"on {len(shared)} shared people; lower bound must exceed {-gate.auroc_tolerance:+.4f}"
    )
    return Check("AUROC vs champion", passed, reason)


def logged_checks(client: MlflowClient, run_id: str) -> list[Check]:
    """Checks a run logged as JSON under checks/: a list of {name, passed, reason}."""
    found = [a for a in client.list_artifacts(run_id, CHECKS_DIR) if a.path.endswith(".json")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for artifact in found:
            path = Path(client.download_artifacts(run_id, artifact.path, tmp))
            results += _parse_checks(json.loads(path.read_text()), artifact.path)
    return results


def _parse_checks(payload: Any, source: str) -> list[Check]:
    items = payload.get("checks", []) if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        return [Check(source, False, "checks file is not a list of checks")]
    out = []
    for item in items:
        try:
            out.append(Check(str(item["name"]), bool(item["passed"]), str(item["reason"])))
        except (KeyError, TypeError):
            out.append(Check(source, False, f"malformed check entry {item!r}"))
    return out


def log_checks(
    client: MlflowClient, run_id: str, checks: Sequence[tuple[str, bool, str]], file_name: str
) -> None:
    """Log checks JSON into a run's checks/ folder (inside the run, before registration)."""
    payload = {"checks": [{"name": n, "passed": bool(p), "reason": r} for n, p, r in checks]}
    client.log_dict(run_id, payload, f"{CHECKS_DIR}/{file_name}")


def _record(client: MlflowClient, verdict: GateVerdict) -> None:
    """Verdict and reasons on the model version: tags and description."""
    name, version = verdict.model_name, verdict.challenger_version
    client.set_model_version_tag(
        name, version, "gate_verdict", "pass" if verdict.passed else "refuse"
    )
    client.set_model_version_tag(
        name, version, "gate_champion_version", verdict.champion_version or "none"
    )
    reasons = "; ".join(verdict.reasons) or "all checks passed"
    client.set_model_version_tag(name, version, "gate_reasons", reasons[:4900])
    client.update_model_version(name, version, description=verdict.summary()[:4900])
