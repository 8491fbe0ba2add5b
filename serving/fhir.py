"""One score result as a FHIR R4 RiskAssessment (see the project's fhir-riskassessment notes).

Probability scale: ``prediction[0].probabilityDecimal`` is the calibrated probability as a
**fraction from 0 to 1** (0.23 means a 23% chance within 12 months), the same scale as
`ScoreResult.probability`, rounded to 4 decimal places. FHIR's invariant ras-2 only requires
the value to be at most 100, which a fraction always meets; it is not a percentage.

Bands map to http://terminology.hl7.org/CodeSystem/risk-probability as low -> low,
moderate -> moderate, high -> high and very high -> high (``certain`` would claim the event
will happen, which no band means); the carerisk band itself is kept in ``qualitativeRisk.text``.

The subject is the Patient found by the pseudonymised identifier the caller sent (system
``urn:carerisk:pseudonym``); no NHS number or name is ever written. Falls carry the SNOMED CT
concept 161898004 "Falls"; complex dependency has no single fitting concept and is text only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from serving.schemas import Reason, ScoreResult

PSEUDONYM_SYSTEM = "urn:carerisk:pseudonym"
MODEL_SYSTEM = "urn:carerisk:model"
SNOMED = "http://snomed.info/sct"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
PROBABILITY_SCALE = "fraction 0-1"
HORIZON_MONTHS = 12

BAND_TO_RISK: dict[str, tuple[str, str]] = {
    "low": ("low", "Low likelihood"),
    "moderate": ("moderate", "Moderate likelihood"),
    "high": ("high", "High likelihood"),
    "very high": ("high", "High likelihood"),
}
OUTCOME_TEXT = {
    "falls": "Fall recorded by a health or care service within 12 months",
    "complex_dependency": (
        "Complex dependency within 12 months: high-intensity long-term social care, "
        "care home admission, three or more emergency admissions or a stay over 21 days"
    ),
}
OUTCOME_SNOMED = {"falls": ("161898004", "Falls")}


def risk_assessment(
    result: ScoreResult, *, computed_at: dt.datetime, top_reasons: int = 3
) -> dict[str, Any]:
    """A FHIR R4 RiskAssessment resource (as a dict) for one score result."""
    if computed_at.tzinfo is None:
        raise ValueError("computed_at must carry a time zone (FHIR dateTime with a time needs one)")
    doc: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": _subject(result.person_ref),
        "occurrenceDateTime": computed_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "method": _method(result.model_name, result.model_version),
        "prediction": [_prediction(result, top_reasons)],
    }
    mitigation = _mitigation(result.reasons)
    if mitigation:
        doc["mitigation"] = mitigation
    if result.notes:
        doc["note"] = [{"text": note} for note in result.notes]
    return doc


def horizon_end(index_date: dt.date) -> dt.date:
    """The index date plus 12 months (29 February moves to 28 February)."""
    try:
        return index_date.replace(year=index_date.year + 1)
    except ValueError:
        return index_date.replace(year=index_date.year + 1, day=28)


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


def _prediction(result: ScoreResult, top_reasons: int) -> dict[str, Any]:
    code, display = BAND_TO_RISK[result.band]
    prediction: dict[str, Any] = {
        "outcome": _outcome(result.outcome),
        "probabilityDecimal": round(result.probability, 4),
        "qualitativeRisk": {
            "coding": [{"system": RISK_PROBABILITY, "code": code, "display": display}],
            "text": f"carerisk band: {result.band}",
        },
        "whenPeriod": {
            "start": result.index_date.isoformat(),
            "end": horizon_end(result.index_date).isoformat(),
        },
    }
    rationale = _rationale(result.reasons, top_reasons)
    if rationale:
        prediction["rationale"] = rationale
    return prediction


def _outcome(outcome: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": OUTCOME_TEXT[outcome]}
    if outcome in OUTCOME_SNOMED:
        code, display = OUTCOME_SNOMED[outcome]
        concept["coding"] = [{"system": SNOMED, "code": code, "display": display}]
    return concept


def _rationale(reasons: list[Reason], top: int) -> str:
    ranked = sorted(reasons, key=lambda r: abs(r.contribution), reverse=True)[:top]
    parts = [f"{r.label} ({r.direction} risk)" for r in ranked]
    return ("Main reasons: " + "; ".join(parts) + ".") if parts else ""


def _mitigation(reasons: list[Reason]) -> str:
    actionable = [r.label for r in reasons if r.modifiable and r.direction == "raises"]
    return ("Factors that can be acted on: " + "; ".join(actionable) + ".") if actionable else ""
