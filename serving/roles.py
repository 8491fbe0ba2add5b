"""Roles, which routes each may call, and what each may see of a score.

`ROUTES` is the one table of the API's routes and who may call each: the routes are mounted
from it, the request guard checks every request against it, the tests walk it and the OpenAPI
document comes from it. A route missing from the table is denied to everyone.

The fire role sees band, rank and non-clinical reasons only (previous falls, living alone, home
care, home visit findings, age band): never diagnoses or medicines, and never a probability;
nor whether an id it may not see a score of exists (serving/routes.py, `person`). The monitor
role is for a metrics scraper: it may read /metrics and nothing about people. A GP key is
further limited to the patients of its practices (serving/keys.py `Principal.practices`,
checked by serving/api.py `check_scope`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

from features.feature_list import Feature
from models.reasons import Reason
from serving.score_results import RestrictedScore, ScoreResult

Role = Literal["gp", "fire", "analyst", "admin", "monitor"]
ROLES: tuple[Role, ...] = get_args(Role)

_CLINICAL_VIEW: frozenset[Role] = frozenset({"gp", "analyst", "admin"})
_PEOPLE: frozenset[Role] = frozenset({"gp", "fire", "analyst", "admin"})  # may see people
_EVERYONE: frozenset[Role] = frozenset(ROLES)
_ADMIN: frozenset[Role] = frozenset({"admin"})
_METRICS: frozenset[Role] = frozenset({"admin", "monitor"})
_REFERRAL_READERS: frozenset[Role] = frozenset({"gp", "fire", "admin"})


@dataclass(frozen=True)
class Route:
    """One route of the API: its name (used by the role checks and the audit), its method and
    path as a client sends them (a `{parameter}` stands for one path segment), and the roles
    allowed to call it. `listed` routes are in the OpenAPI document. The fire role may call a
    route that shows people `beyond_referrals` only where the area shares its register with the
    fire service (serving/config.py `fire_sharing`)."""

    name: str
    method: Literal["GET", "POST"]
    path: str
    roles: frozenset[Role]
    listed: bool = True
    beyond_referrals: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        """The paths this route answers, as the mounted app's routing matches them."""
        return re.compile(re.sub(r"\\\{[^/]+?\\\}", lambda _: SEGMENT, re.escape(self.path)))

    @property
    def has_parameters(self) -> bool:
        return "{" in self.path


SEGMENT = r"[^/\n]+"  # a path parameter: one segment

# The one table of routes and roles: the routes are mounted from it (serving/api.py `mount`),
# the request guard checks every request against it, the tests walk it and the OpenAPI document
# lists the `listed` ones. A route missing from the table is denied to everyone.
ROUTES: tuple[Route, ...] = (
    Route("score", "POST", "/v1/score", _CLINICAL_VIEW),
    Route("score_records", "POST", "/v1/score/records", _CLINICAL_VIEW),
    Route("fhir", "POST", "/v1/fhir/risk-assessment", _CLINICAL_VIEW),
    # full for clinical roles, restricted for fire (under the area's fire sharing)
    Route("person", "POST", "/v1/person", _PEOPLE, beyond_referrals=True),
    Route("register", "GET", "/v1/register", _PEOPLE, beyond_referrals=True),
    Route("outcomes", "GET", "/v1/outcomes", _EVERYONE),  # titles, cohorts and band labels
    Route("whoami", "GET", "/v1/whoami", _EVERYONE),
    Route("openapi", "GET", "/v1/openapi.json", _EVERYONE, listed=False),
    Route("reload_objections", "POST", "/v1/admin/objections/reload", _ADMIN),
    Route("audit_verify", "GET", "/v1/admin/audit/verify", _ADMIN),
    Route("reload_service", "POST", "/v1/admin/reload", _ADMIN),  # new champions and snapshot
    Route(
        "metrics", "GET", "/metrics", _METRICS, listed=False
    ),  # served by serving/request_guard.py
    # the referral loop (serving/referral_routes.py); each referral is further limited to the
    # GP organisation that made it, the fire organisation receiving it and the admin
    Route("referral_form", "GET", "/v1/referrals/form", frozenset({"gp", "admin"})),
    Route("referral_create", "POST", "/v1/referrals", frozenset({"gp"})),  # with an agreement
    Route("referral_queue", "GET", "/v1/referrals", frozenset({"fire", "admin"})),
    Route("referral_read", "GET", "/v1/referrals/{referral_id}", _REFERRAL_READERS),
    Route("referral_status", "POST", "/v1/referrals/{referral_id}/status", frozenset({"fire"})),
)

ROUTE: Mapping[str, Route] = MappingProxyType({r.name: r for r in ROUTES})
# route name -> roles allowed to call it
ROUTE_ROLES: Mapping[str, frozenset[Role]] = MappingProxyType({r.name: r.roles for r in ROUTES})
_PATTERNS = tuple((route, route.pattern) for route in ROUTES)


def route_name(method: str, path: str) -> str:
    """The name of the route a request answers to, or "unknown". A path without parameters
    that only one route has names that route whatever the method (the app answers 405)."""
    matching = [r for r, pattern in _PATTERNS if pattern.fullmatch(path)]
    for route in matching:
        if route.method == method:
            return route.name
    fixed = [r for r in matching if not r.has_parameters]
    return fixed[0].name if len(fixed) == 1 else "unknown"


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

    `features` is the registry (e.g. `features.feature_list.FEATURES`, or a name -> Feature map).
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
