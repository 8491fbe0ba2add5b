"""A referral to the fire service as a FHIR R4 ServiceRequest (validated with fhir.resources.R4B).

The resource is an order (``intent: order``) for a home safety and falls check, performed by the
receiving fire organisation, for the person known by their pseudonymised id (the same identifier
system as serving/fhir.py's RiskAssessment). Its parts:

- ``category``: home safety / falls prevention. No SNOMED CT concept for a fire service's home
  safety check was found that we could vouch for, so the category is a carerisk code with its
  text; ``reasonCode`` is the outcome's at-risk finding in SNOMED CT where its definition gives
  one (`Outcome.at_risk_finding`; falls: 129839007 "At risk for falls"), or its text.
- the score behind it: a contained RiskAssessment (the band as ``qualitativeRisk``, the model and
  version as ``method``, the horizon as ``whenPeriod``; no probability, no clinical reason, so the
  same resource can go to the fire service), referenced from ``supportingInfo``. R4 allows
  ``reasonReference`` to point only at a Condition, Observation, DiagnosticReport or
  DocumentReference; ``supportingInfo`` takes any resource, so the RiskAssessment is referenced
  there (a strict FHIR validator would reject it under ``reasonReference``).
- the agreement: who recorded it (``requester`` display and a note), when (``authoredOn`` is the
  referral's time; the note says when the person agreed) and what was agreed (the wording).
- ``status`` follows the referral: active while it is open, completed once visited or closed
  after a visit, revoked when the person declined or it closed unvisited. A suggestion on a CDS
  Hooks card (serving/cds_hooks.py) carries a ``draft``: nothing is agreed until the clinician
  records it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from features.fhir_terms import MODEL_SYSTEM, PSEUDONYM_SYSTEM, SNOMED, qualitative_risk
from features.labels import add_months
from features.outcomes import Outcome
from referrals.store import AGREEMENT_WORDING, Referral

REFERRAL_SYSTEM = "urn:carerisk:referral"
CATEGORY_SYSTEM = "urn:carerisk:referral-category"
ORG_SYSTEM = "urn:carerisk:organisation"
CATEGORY = ("home-safety-falls-prevention", "Home safety and falls prevention check")
CHECK_TEXT = "Home safety and falls check by the fire and rescue service"
RISK_ID = "risk"


def referral_request(referral: Referral, outcome: Outcome) -> dict[str, Any]:
    """The ServiceRequest of a stored referral, validated."""
    agreement = referral.agreement
    agreed = (
        f"Agreement recorded by {agreement.recorded_by} on "
        f"{agreement.recorded_at.isoformat(timespec='minutes')}: {agreement.wording}"
    )
    doc = _base(
        person_id=referral.person_id,
        outcome=outcome,
        band=referral.band,
        model=(referral.model_name, referral.model_version),
        index_date=referral.index_date,
        receiving_org=referral.receiving_org,
        status=_status(referral),
    )
    doc["id"] = referral.id
    doc["identifier"] = [{"system": REFERRAL_SYSTEM, "value": referral.id}]
    doc["authoredOn"] = referral.created_at
    doc["requester"] = {
        "type": "Organization",
        "identifier": {"system": ORG_SYSTEM, "value": referral.referring_org},
        "display": f"{referral.referring_org} (recorded by {agreement.recorded_by})",
    }
    doc["note"] = [{"text": agreed, "time": agreement.recorded_at.isoformat()}]
    return validated(doc)


def suggested_request(
    *,
    person_id: str,
    outcome: Outcome,
    band: str,
    model: tuple[str, str],
    index_date: dt.date,
    receiving_org: str | None,
) -> dict[str, Any]:
    """A draft ServiceRequest for a CDS Hooks suggestion: the clinician records the person's
    agreement before it becomes a referral."""
    doc = _base(
        person_id=person_id, outcome=outcome, band=band, model=model,
        index_date=index_date, receiving_org=receiving_org, status="draft",
    )  # fmt: skip
    ask = "Before sending: ask the person, and record their agreement. "
    doc["note"] = [{"text": ask + AGREEMENT_WORDING}]
    return validated(doc)


def validated(doc: dict[str, Any]) -> dict[str, Any]:
    """The resource as JSON data, after fhir.resources.R4B has parsed it (raises when invalid)."""
    ServiceRequest.model_validate(doc)
    return doc


def _base(
    *,
    person_id: str,
    outcome: Outcome,
    band: str,
    model: tuple[str, str],
    index_date: dt.date,
    receiving_org: str | None,
    status: str,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "contained": [_risk(person_id, outcome, band, model, index_date)],
        "status": status,
        "intent": "order",
        "category": [
            {
                "coding": [
                    {"system": CATEGORY_SYSTEM, "code": CATEGORY[0], "display": CATEGORY[1]}
                ],
                "text": CATEGORY[1],
            }
        ],  # fmt: skip
        "code": {"text": CHECK_TEXT},
        "subject": _subject(person_id),
        "reasonCode": [_reason(outcome)],
        "supportingInfo": [
            {
                "reference": f"#{RISK_ID}",
                "type": "RiskAssessment",
                "display": f"carerisk {outcome.title.lower()} score: band {band}",
            }
        ],  # fmt: skip
    }
    if receiving_org:
        doc["performer"] = [
            {"type": "Organization",
             "identifier": {"system": ORG_SYSTEM, "value": receiving_org},
             "display": receiving_org}
        ]  # fmt: skip
    return doc


def _risk(
    person_id: str, outcome: Outcome, band: str, model: tuple[str, str], index_date: dt.date
) -> dict[str, Any]:
    risk = qualitative_risk(band, outcome)
    name, version = model
    predicts = outcome.predicts[:1].upper() + outcome.predicts[1:]
    return {
        "resourceType": "RiskAssessment",
        "id": RISK_ID,
        "status": "final",
        "subject": _subject(person_id),
        "method": {
            "coding": [{"system": MODEL_SYSTEM, "code": name, "version": version}],
            "text": f"carerisk model {name} version {version}",
        },
        "prediction": [
            {
                "outcome": {"text": predicts},
                "qualitativeRisk": risk,
                "whenPeriod": {
                    "start": index_date.isoformat(),
                    "end": add_months(index_date, outcome.horizon_months).isoformat(),
                },
            }
        ],
    }


def _subject(person_id: str) -> dict[str, Any]:
    return {
        "type": "Patient",
        "identifier": {"system": PSEUDONYM_SYSTEM, "value": person_id},
        "display": f"Person {person_id} (pseudonymised)",
    }


def _reason(outcome: Outcome) -> dict[str, Any]:
    """The outcome's at-risk finding (SNOMED CT) where its definition gives one; else text."""
    if outcome.at_risk_finding:
        code, display = outcome.at_risk_finding
        return {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display}
    return {"text": f"At risk of {outcome.title.lower()}"}


def _status(referral: Referral) -> str:
    if referral.is_open:
        return "active"
    if referral.status == "visited" or referral.visit_date is not None:
        return "completed"
    return "revoked"
