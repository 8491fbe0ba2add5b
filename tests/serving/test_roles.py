from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st

from features.outcomes import PRODUCT
from models.reasons import Reason
from serving.api import V1
from serving.config import ServingConfig
from serving.roles import (
    ROLES,
    ROUTE,
    ROUTE_ROLES,
    ROUTES,
    is_allowed,
    route_name,
    scope_reasons,
    scope_result,
)
from serving.routes import v1_routers
from serving.score_results import RestrictedScore, ScoreResult
from tests.serving.builders import FEATURES, REASONS, make_result

CLINICAL_ONLY = {"score", "score_records", "fhir"}
ADMIN_ONLY = {"reload_objections", "audit_verify", "reload_service"}
# the referral loop: a GP records the agreement and refers, the receiving fire service moves
# the referral on; neither the analyst nor (for those two acts) the admin can
REFERRALS = {
    "referral_form": {"gp", "admin"},
    "referral_create": {"gp"},
    "referral_queue": {"fire", "admin"},
    "referral_read": {"gp", "fire", "admin"},
    "referral_status": {"fire"},
}
PEOPLE = {"register", "person"}  # every role that may see people
EVERYONE = {"outcomes", "whoami", "openapi"}  # nothing about people


def test_route_table_matches_the_policy():
    for route, roles in ROUTE_ROLES.items():
        assert roles <= set(ROLES), route
        if route in REFERRALS:
            assert roles == REFERRALS[route], route
            continue
        assert "admin" in roles, route
        if route in CLINICAL_ONLY:
            assert roles == {"gp", "analyst", "admin"}
        elif route in ADMIN_ONLY:
            assert roles == {"admin"}
        elif route in PEOPLE:
            assert roles == {"gp", "fire", "analyst", "admin"}
        elif route == "metrics":
            assert roles == {"admin", "monitor"}
        else:
            assert route in EVERYONE
            assert roles == set(ROLES)
    fire_routes = {r for r in ROUTE_ROLES if is_allowed(r, "fire")}
    assert fire_routes == PEOPLE | EVERYONE | {"referral_queue", "referral_read",
                                               "referral_status"}  # fmt: skip
    assert not any(is_allowed(r, "analyst") or is_allowed(r, "monitor") for r in REFERRALS)
    monitor_routes = {r for r in ROUTE_ROLES if is_allowed(r, "monitor")}
    assert monitor_routes == EVERYONE | {"metrics"}


def test_unknown_routes_and_roles_are_denied():
    assert not is_allowed("drop_tables", "admin")
    assert not is_allowed("score", "nurse")
    with pytest.raises(ValueError, match="unknown role"):
        scope_reasons("nurse", REASONS, FEATURES)


def test_fire_sees_only_non_clinical_reasons():
    kept = scope_reasons("fire", REASONS, FEATURES)
    assert [r.feature for r in kept] == ["falls_12m", "telecare", "lives_alone"]
    for role in ("gp", "analyst", "admin"):
        assert scope_reasons(role, REASONS, FEATURES) == REASONS


def test_registry_or_missing_entry_makes_a_reason_clinical():
    mislabelled = Reason(
        feature="dementia",
        label="has a dementia diagnosis",
        contribution=1.0,
        direction="raises",
        modifiable=False,
        clinical=False,  # the reason says non-clinical, the registry says clinical
    )
    unknown = mislabelled.model_copy(update={"feature": "not_in_registry"})
    assert scope_reasons("fire", [mislabelled, unknown], FEATURES) == []


def test_fire_view_has_no_probability():
    view = scope_result("fire", make_result(), FEATURES)
    assert isinstance(view, RestrictedScore)
    dumped = view.model_dump(mode="json")
    assert "probability" not in dumped
    assert "0.23" not in json.dumps(dumped)
    assert dumped["band"] == "high" and dumped["rank"] == 17
    assert all(not r["clinical"] for r in dumped["reasons"])
    full = scope_result("gp", make_result(), FEATURES)
    assert isinstance(full, ScoreResult) and full.probability == pytest.approx(0.23456)


reason_strategy = st.builds(
    Reason,
    feature=st.sampled_from(sorted(FEATURES) + ["unknown_feature"]),
    label=st.just("words"),
    value=st.none(),
    contribution=st.floats(-3, 3),
    direction=st.sampled_from(["raises", "lowers"]),
    modifiable=st.booleans(),
    clinical=st.booleans(),
)


@given(st.lists(reason_strategy, max_size=12))
def test_fire_never_sees_a_clinical_reason(reasons):
    view = scope_result("fire", make_result(reasons=reasons), FEATURES)
    assert not hasattr(view, "probability")
    for r in view.reasons:
        assert not r.clinical
        assert not FEATURES[r.feature].clinical


def test_registry_may_be_a_sequence_of_features():
    kept = scope_reasons("fire", REASONS, tuple(FEATURES.values()))
    assert [r.feature for r in kept] == ["falls_12m", "telecare", "lives_alone"]


def test_numpy_values_keep_their_python_type():
    import numpy as np

    reason = REASONS[0].model_copy(update={})
    made = Reason.model_validate({**reason.model_dump(), "value": np.int64(2)})
    assert made.value == 2 and type(made.value) is int
    flag = Reason.model_validate({**reason.model_dump(), "value": np.bool_(True)})
    assert flag.value is True


# --- the one route table ---------------------------------------------------------------------


def test_the_openapi_document_and_the_mounted_routes_are_the_table(tmp_path: Path) -> None:
    app = FastAPI(openapi_url=ROUTE["openapi"].path.removeprefix(V1))  # as serving/service.py
    config = ServingConfig(home=tmp_path, tracking_uri="sqlite:///unused.db")
    routers = v1_routers(PRODUCT.outcomes, config)
    for routes in routers:
        app.include_router(routes)
    listed = {(r.method, r.path) for r in ROUTES if r.listed}
    documented = {
        (method.upper(), V1 + path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert documented == listed
    mounted = {
        (route.name, method, V1 + route.path)
        for routes in routers
        for route in routes.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert mounted == {(r.name, r.method, r.path) for r in ROUTES if r.listed}
    unlisted = {r.path for r in ROUTES if not r.listed}
    assert unlisted == {V1 + app.openapi_url, "/metrics"}  # the document itself; the gate's


def test_each_route_is_named_by_its_method_and_path() -> None:
    for route in ROUTES:
        path = route.path.replace("{referral_id}", "ref-" + "0" * 24)
        assert route_name(route.method, path) == route.name
    assert route_name("POST", "/v1/whoami") == "whoami"  # one route at the path: the app says 405
    assert route_name("PUT", "/v1/referrals") == "unknown"  # two routes there, neither a PUT
    assert route_name("GET", "/v1/referrals/x/status") == "unknown"
    assert route_name("GET", "/v1/nothing") == "unknown"
    assert set(ROUTE_ROLES) == {r.name for r in ROUTES} and len(ROUTES) == len(ROUTE_ROLES)


# --- each rule kept in one place ------------------------------------------------------------

SERVING = Path(__file__).resolve().parents[2] / "serving"


def serving_sources() -> list[tuple[str, ast.Module]]:
    return [
        (p.name, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(SERVING.glob("*.py"))
    ]


def outcome_names_compared(tree: ast.Module) -> list[int]:
    """Lines where an outcome's name is compared with a string, or keys a literal table."""
    names = set(PRODUCT.names()) | {o.cli_name for o in PRODUCT}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            listed = [p for p in parts if isinstance(p, ast.Set | ast.Tuple | ast.List)]
            candidates = [*parts, *(e for p in listed for e in p.elts)]
        elif isinstance(node, ast.Dict):
            candidates = [k for k in node.keys if k is not None]
        else:
            continue
        if any(isinstance(c, ast.Constant) and c.value in names for c in candidates):
            found.append(node.lineno)
    return found


def route_or_role_tables(tree: ast.Module) -> list[int]:
    """Lines holding a route's path, or a literal collection of two or more route or role
    names: a second route or role table."""
    paths = {r.path for r in ROUTES}
    names = set(ROUTE) | set(ROLES)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in paths:
            found.append(node.lineno)
        elif isinstance(node, ast.Set | ast.Tuple | ast.List | ast.Dict):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            named = [i for i in items if isinstance(i, ast.Constant) and i.value in names]
            if len(named) >= 2:
                found.append(node.lineno)
    return found


def test_serving_compares_no_outcome_name_as_a_string() -> None:
    found = {
        name: lines for name, tree in serving_sources() if (lines := outcome_names_compared(tree))
    }
    assert found == {}, f"outcome-specific branches (put what they need on the Outcome): {found}"


def test_the_route_table_is_the_only_route_or_role_table() -> None:
    found = {
        name: lines
        for name, tree in serving_sources()
        if name != "roles.py" and (lines := route_or_role_tables(tree))
    }
    assert found == {}, f"routes or roles listed outside serving/roles.py ROUTES: {found}"


def test_the_checks_find_what_they_look_for() -> None:
    branch = ast.parse('if outcome.name == "falls":\n    pass\ncodes = {"complex_dependency": 1}')
    assert outcome_names_compared(branch) == [1, 3]
    table = ast.parse('PATHS = {"score": "/v1/score"}\nREADS = frozenset({"gp", "fire"})')
    assert route_or_role_tables(table) == [1, 2]  # the path; the two roles
