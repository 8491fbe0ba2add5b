"""Roles, which routes each may call, and what each may see of a score.

`ROUTE_ROLES` is the one declarative table of access: the service checks every request against
it and a test walks it. A route missing from the table is denied to everyone.

The fire role sees band, rank and non-clinical reasons only (previous falls, living alone, home
care, home visit findings, age band): never diagnoses or medicines, and never a probability;
nor whether an id it may not see a score of exists (serving/routes.py, `person`). The monitor
role is for a metrics scraper: it may read /metrics and nothing about people.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal, get_args

from features.registry import Feature
from models.reasons import Reason
from serving.schemas import RestrictedScore, ScoreResult

Role = Literal["gp", "fire", "analyst", "admin", "monitor"]
ROLES: tuple[Role, ...] = get_args(Role)

_CLINICAL_VIEW: frozenset[Role] = frozenset({"gp", "analyst", "admin"})
_PEOPLE: frozenset[Role] = frozenset({"gp", "fire", "analyst", "admin"})  # may see people
_EVERYONE: frozenset[Role] = frozenset(ROLES)
_ADMIN: frozenset[Role] = frozenset({"admin"})
_METRICS: frozenset[Role] = frozenset({"admin", "monitor"})

# route name -> roles allowed to call it
ROUTE_ROLES: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        "score": _CLINICAL_VIEW,  # POST /v1/score
        "score_records": _CLINICAL_VIEW,  # POST /v1/score/records
        "fhir": _CLINICAL_VIEW,  # POST /v1/fhir/risk-assessment
        "person": _PEOPLE,  # POST /v1/person: full for clinical roles, restricted for fire
        "register": _PEOPLE,  # GET /v1/register: restricted for fire
        "outcomes": _EVERYONE,  # GET /v1/outcomes: titles, cohorts and band labels
        "whoami": _EVERYONE,  # GET /v1/whoami
        "openapi": _EVERYONE,  # GET /v1/openapi.json: the API's description
        "reload_objections": _ADMIN,  # POST /v1/admin/objections/reload
        "audit_verify": _ADMIN,  # GET /v1/admin/audit/verify
        "reload_service": _ADMIN,  # POST /v1/admin/reload: new champions and snapshot
        "metrics": _METRICS,  # GET /metrics (outside /v1; served by serving/gate.py)
        # the referral loop (serving/referral_routes.py); each referral is further limited to
        # the GP organisation that made it, the fire organisation receiving it and the admin
        "referral_form": frozenset({"gp", "admin"}),  # GET /v1/referrals/form
        "referral_create": frozenset({"gp"}),  # POST /v1/referrals: records an agreement
        "referral_queue": frozenset({"fire", "admin"}),  # GET /v1/referrals
        "referral_read": frozenset({"gp", "fire", "admin"}),  # GET /v1/referrals/{id}
        "referral_status": frozenset({"fire"}),  # POST /v1/referrals/{id}/status
    }
)


def is_role(value: str) -> bool:
    return value in ROLES


def is_allowed(route: str, role: str) -> bool:
    """True when the role may call the route; unknown routes and roles are denied."""
    return role in ROUTE_ROLES.get(route, frozenset())


def sees_clinical(role: str) -> bool:
    """True for roles that see probabilities, diagnoses and medicines."""
    return role in _CLINICAL_VIEW


Registry = Mapping[str, Feature] | Iterable[Feature]


def scope_reasons(role: str, reasons: Iterable[Reason], features: Registry) -> list[Reason]:
    """The reasons a role may see.

    `features` is the registry (e.g. `features.registry.FEATURES`, or a name -> Feature map).
    For fire, a reason is kept only when both the reason and the registry say it is not
    clinical; a feature missing from the registry counts as clinical (fail closed).
    """
    _check_role(role)
    if sees_clinical(role):
        return list(reasons)
    by_name = _by_name(features)
    return [r for r in reasons if not _is_clinical(r, by_name)]


def scope_result(
    role: str, result: ScoreResult, features: Registry
) -> ScoreResult | RestrictedScore:
    """The whole score as a role may see it: fire gets a `RestrictedScore` with no probability."""
    reasons = scope_reasons(role, result.reasons, features)
    if sees_clinical(role):
        return result
    return RestrictedScore(
        person_ref=result.person_ref,
        outcome=result.outcome,
        model_name=result.model_name,
        model_version=result.model_version,
        index_date=result.index_date,
        band=result.band,
        rank=result.rank,
        reasons=reasons,
        notes=list(result.notes),
    )


def _by_name(features: Registry) -> Mapping[str, Feature]:
    if isinstance(features, Mapping):
        return features
    return {f.name: f for f in features}


def _is_clinical(reason: Reason, features: Mapping[str, Feature]) -> bool:
    feature = features.get(reason.feature)
    return reason.clinical or feature is None or feature.clinical


def _check_role(role: str) -> None:
    if not is_role(role):
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
