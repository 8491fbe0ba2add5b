"""The FHIR R4 terms carerisk writes in every resource it makes: its identifier systems, the
code systems it codes in, and a risk band as a FHIR qualitativeRisk. The RiskAssessment
(serving/fhir.py), the ServiceRequest (referrals/fhir_requests.py) and CDS Hooks cards read them
from here."""

from __future__ import annotations

from typing import Any

from features.outcomes import Outcome

PSEUDONYM_SYSTEM = "urn:carerisk:pseudonym"
MODEL_SYSTEM = "urn:carerisk:model"
SNOMED = "http://snomed.info/sct"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"

# the risk-probability code system's displays
RISK_DISPLAY: dict[str, str] = {
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
}


def qualitative_risk(band: str, outcome: Outcome) -> dict[str, Any]:
    """A band as a FHIR qualitativeRisk: its text, and its risk-probability code when the
    outcome gives the band one (a band with no FHIR counterpart stays text only)."""
    risk: dict[str, Any] = {"text": f"carerisk band: {band}"}
    code = outcome.risk_code(band)
    if code is not None:
        risk["coding"] = [{"system": RISK_PROBABILITY, "code": code, "display": RISK_DISPLAY[code]}]
    return risk
