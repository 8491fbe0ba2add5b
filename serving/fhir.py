"""One score result as a FHIR R4 RiskAssessment (see the project's fhir-riskassessment notes).

Probability scale: ``prediction[0].probabilityDecimal`` is the calibrated probability as a
**fraction from 0 to 1** (0.23 means a 23% chance within 12 months), the same scale as
`ScoreResult.probability`, rounded to 4 decimal places. FHIR's invariant ras-2 only requires
the value to be at most 100, which a fraction always meets; it is not a percentage.

Bands map to http://terminology.hl7.org/CodeSystem/risk-probability as the outcome says
(`Outcome.fhir_risk`: for the product's outcomes low -> low, moderate -> moderate, high -> high
and very high -> high); the carerisk band itself is kept in ``qualitativeRisk.text``.

The subject is the Patient found by the pseudonymised identifier the caller sent (system
``urn:carerisk:pseudonym``); no NHS number or name is ever written. The outcome is the
definition's (features/outcomes.py): what it predicts as text, with its SNOMED CT concept where
the definition gives one, and its horizon as the prediction's period.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from features.fhir_terms import MODEL_SYSTEM, PSEUDONYM_SYSTEM, SNOMED, qualitative_risk
from features.labels import add_months
from features.outcomes import Outcome
from models.reasons import Reason
from serving.score_results import ScoreResult

PROBABILITY_SCALE = "fraction 0-1"


def risk_assessment(
    result: ScoreResult, outcome: Outcome, *, computed_at: dt.datetime, top_reasons: int = 3
) -> dict[str, Any]:
    """A FHIR R4 RiskAssessment resource (as a dict) for one score result of `outcome`."""
    if computed_at.tzinfo is None:
        raise ValueError("computed_at must carry a time zone (FHIR dateTime with a time needs one)")
    doc: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": _subject(result.person_ref),
        "occurrenceDateTime": computed_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "method": _method(result.model_name, result.model_version),
        "prediction": [_prediction(result, outcome, top_reasons)],
    }
    mitigation = _mitigation(result.reasons)
    if mitigation:
        doc["mitigation"] = mitigation
    if result.notes:
        doc["note"] = [{"text": note} for note in result.notes]
    return doc


def _subject(person_ref: str) -> dict[str, Any]:
    return {
        "type": "Patient",
        "identifier": {"system": PSEUDONYM_SYSTEM, "value": person_ref},
        "display": f"Person {person_ref} (pseudonymised)",
    }


def _method(name: str, version: str) -> dict[str, Any]:
    return {
        "coding": [{"system": MODEL_SYSTEM, "code": name, "version": version, "display": name}],
        "text": f"carerisk model {name} version {version}",
    }


def _prediction(result: ScoreResult, outcome: Outcome, top_reasons: int) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        "outcome": _outcome(outcome),
        "probabilityDecimal": round(result.probability, 4),
        "qualitativeRisk": qualitative_risk(result.band, outcome),
        "whenPeriod": {
            "start": result.index_date.isoformat(),
            "end": add_months(result.index_date, outcome.horizon_months).isoformat(),
        },
    }
    rationale = _rationale(result.reasons, top_reasons)
    if rationale:
        prediction["rationale"] = rationale
    return prediction


def _outcome(outcome: Outcome) -> dict[str, Any]:
    text = outcome.predicts[:1].upper() + outcome.predicts[1:]
    concept: dict[str, Any] = {"text": text}
    if outcome.snomed:
        code, display = outcome.snomed
        concept["coding"] = [{"system": SNOMED, "code": code, "display": display}]
    return concept


def _rationale(reasons: list[Reason], top: int) -> str:
    ranked = sorted(reasons, key=lambda r: abs(r.contribution), reverse=True)[:top]
    parts = [f"{r.label} ({r.direction} risk)" for r in ranked]
    return ("Main reasons: " + "; ".join(parts) + ".") if parts else ""


def _mitigation(reasons: list[Reason]) -> str:
    actionable = [r.label for r in reasons if r.modifiable and r.direction == "raises"]
    return ("Factors that can be acted on: " + "; ".join(actionable) + ".") if actionable else ""
