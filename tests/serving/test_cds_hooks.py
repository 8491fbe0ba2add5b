"""CDS Hooks without a server: client JWTs checked as the specification requires, client key
registration, and cards checked against the specification's field rules (tests/serving/
cds_spec.py); the ServiceRequests validated with fhir.resources.R4B."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir.resources.R4B.servicerequest import ServiceRequest
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from codelists import CodeLists
from features.home import Home
from features.outcomes import BAND_LABELS, COMPLEX_DEPENDENCY, Cohort, Outcome
from features.outcomes import FALLS as UNCODED_FALLS
from referrals.fhir_requests import referral_request
from referrals.store import ReferralStore, StatusChange
from serving.cds_hooks import CardContext, HookRequest, discovery, escape, indicator, risk_card
from serving.cds_patients import PatientLookup, PatientLookupError
from serving.jwt_auth import (
    CdsClientError,
    CdsClients,
    TokenRefused,
    verify_client_token,
)
from serving.token_memory import UsedTokens
from tests.referrals.builders import FIRE, new, visit
from tests.serving.builders import make_result
from tests.serving.cds_spec import (
    SPEC_PATIENT_VIEW_REQUEST,
    SigningClient,
    card_problems,
    discovery_problems,
    hmac_token,
    response_problems,
    spec_request,
    unsigned_token,
)

# the falls outcome as the service holds it: with its codings from the packaged lists
FALLS = UNCODED_FALLS.with_codings(CodeLists.load())

AUD = "https://carerisk.example.org/cds-services/carerisk-falls"


@pytest.fixture
def registered(tmp_path: Path) -> tuple[SigningClient, CdsClients, UsedTokens]:
    client = SigningClient()
    clients = CdsClients(Home(tmp_path).cds_clients_path)
    clients.add(client.iss, "Elm Surgery EHR", client.jwks(), jku=["https://ehr.example.org/jwks"])
    return client, clients, UsedTokens(Home(tmp_path).referrals_path)


def check(token: str, clients: CdsClients, store: UsedTokens, aud: str = AUD) -> Any:
    return verify_client_token(token, clients, aud, store.first_use)


# --- tokens ----------------------------------------------------------------------------------


def test_a_signed_token_for_this_endpoint_is_accepted_once(registered: Any) -> None:
    client, clients, store = registered
    token = client.token(AUD, tenant="2ddd6c3a-8e9a-44c6-a305-52111ad302a2")
    found, claims = check(token, clients, store)
    assert found.org == "Elm Surgery EHR" and claims["aud"] == AUD
    with pytest.raises(TokenRefused, match="replayed"):
        check(token, clients, store)
    array_aud = client.token([AUD])  # "aud ... either a string or an array of strings"
    assert check(array_aud, clients, store)[0].iss == client.iss


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("expired", "expired"),
        ("wrong_aud", "aud is not this endpoint"),
        ("discovery_aud", "aud is not this endpoint"),
        ("no_jti", "no jti"),
        ("no_exp", "no exp"),
        ("no_iat", "no iat"),
        ("future_iat", "issued in the future"),
        ("too_long", "at most 600 seconds"),
        ("unknown_iss", "not a registered CDS client"),
        ("unknown_kid", "not a key registered"),
        ("no_kid", "must name its key"),
        ("no_typ", "typ JWT"),
        ("foreign_jku", "jku is not a key set URL registered"),
        ("other_key", "signature does not verify"),
        ("none", "alg must be one of"),
        ("hmac", "alg must be one of"),
        ("not_a_jwt", "not a JWT"),
    ],
)
def test_tokens_the_specification_rules_out_are_refused(
    registered: Any, case: str, words: str
) -> None:
    client, clients, store = registered
    tokens = {
        "expired": lambda: client.token(AUD, exp=1_400_000_000, iat=1_399_999_990),
        "wrong_aud": lambda: client.token("https://elsewhere.example/cds-services/carerisk-falls"),
        "discovery_aud": lambda: client.token(AUD.rsplit("/", 1)[0]),
        "no_jti": lambda: client.token(AUD, jti=None),
        "no_exp": lambda: client.token(AUD, exp=None),
        "no_iat": lambda: client.token(AUD, iat=None),
        "future_iat": lambda: client.token(AUD, iat=2_000_000_000, exp=2_000_000_060),
        "too_long": lambda: client.token(AUD, lifetime=3600),
        "unknown_iss": lambda: client.token(AUD, iss="https://stranger.example/"),
        "unknown_kid": lambda: client.token(AUD, headers={"kid": "other"}),
        "no_kid": lambda: client.token(AUD, headers={"kid": None}),
        "no_typ": lambda: client.token(AUD, headers={"typ": None}),
        "foreign_jku": lambda: client.token(AUD, headers={"jku": "https://evil.example/jwks"}),
        "other_key": lambda: dataclasses.replace(client, key=None).token(AUD),
        "none": lambda: unsigned_token(AUD, client.iss, client.kid),
        "hmac": lambda: hmac_token(AUD, client.iss, client.kid),
        "not_a_jwt": lambda: "crk_0123456789ab_" + "x" * 43,
    }
    with pytest.raises(TokenRefused, match=words):
        check(tokens[case](), clients, store)


def test_a_registered_jku_and_an_rs384_client_are_accepted(tmp_path: Path) -> None:
    rs = SigningClient(iss="https://rs.example.org/", alg="RS384", kid="rs-1")
    clients = CdsClients(Home(tmp_path).cds_clients_path)
    clients.add(rs.iss, "RS Surgery", rs.jwks(), jku=["https://rs.example.org/jwks"])
    store = UsedTokens(Home(tmp_path).referrals_path)
    token = rs.token(AUD, headers={"jku": "https://rs.example.org/jwks"})
    assert check(token, clients, store)[0].org == "RS Surgery"


def test_an_algorithm_that_does_not_fit_the_key_is_refused(tmp_path: Path) -> None:
    es256 = SigningClient(alg="ES256", kid="k")  # a P-256 key
    jwks = es256.jwks()
    jwks["keys"][0].pop("alg")  # registered without saying its algorithm
    clients = CdsClients(tmp_path / "c.json")
    clients.add(es256.iss, "Org", jwks)
    # PyJWT will not sign ES384 with a P-256 key, so the token is put together by hand
    header = {"alg": "ES384", "kid": "k", "typ": "JWT"}
    claims = {"iss": es256.iss, "aud": AUD, "exp": 4_000_000_000, "iat": 3_999_999_990, "jti": "j"}
    parts = [json.dumps(header).encode(), json.dumps(claims).encode(), bytes(96)]
    forged = ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts)
    with pytest.raises(TokenRefused, match="ES384"):
        check(forged, clients, UsedTokens(tmp_path / "r.sqlite"))


def test_only_public_asymmetric_keys_register(tmp_path: Path) -> None:
    clients = CdsClients(Home(tmp_path).cds_clients_path)
    private = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1())))
    small = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 1024).public_key()))
    cases = {
        "private": ({"keys": [{**private, "kid": "a"}]}, "private"),
        "small": ({"keys": [{**small, "kid": "a"}]}, "2048 bits"),
        "symmetric": (
            {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]},
            "private or symmetric",
        ),
        "no kid": ({"keys": [dict(small)]}, "kid"),
        "empty": ({"keys": []}, "non-empty"),
        "hmac alg": ({"keys": [{**SigningClient().jwks()["keys"][0], "alg": "HS256"}]}, "alg"),
    }
    for name, (jwks, words) in cases.items():
        with pytest.raises(CdsClientError, match=words):
            clients.add("https://ehr.example.org/", "Org", jwks)
        assert clients.list() == [], name
    with pytest.raises(CdsClientError, match="http"):
        clients.add("ehr.example.org", "Org", SigningClient().jwks())
    client = clients.add("https://ehr.example.org/", "Org", SigningClient().jwks())
    assert clients.by_issuer(client.iss) == client
    assert oct(clients.path.stat().st_mode & 0o777) == "0o600"
    clients.remove(client.iss)
    assert clients.by_issuer(client.iss) is None


# --- requests ----------------------------------------------------------------------------------


def test_the_specifications_example_request_parses() -> None:
    request = HookRequest.model_validate(SPEC_PATIENT_VIEW_REQUEST)
    assert request.context.patientId == "1288992"
    assert request.context.userId == "Practitioner/example"
    with pytest.raises(ValueError, match="fhirServer is required"):
        HookRequest.model_validate({k: v for k, v in spec_request().items() if k != "fhirServer"})
    with pytest.raises(ValueError):
        HookRequest.model_validate({**spec_request(), "hook": "order-sign"})
    with pytest.raises(ValueError):
        HookRequest.model_validate(spec_request(userId="Device/1"))


def test_the_patient_lookup_names_a_bad_row(tmp_path: Path) -> None:
    path = Home(tmp_path).cds_patients_path
    lookup = PatientLookup(path)
    assert lookup.person_of("1288992") is None  # no file: nobody mapped
    path.write_text("patient_id,person_id\n1288992,Pabcdef000001\n")
    assert lookup.person_of("1288992") == "Pabcdef000001"
    path.write_text("patient_id,person_id\n1288992,Pabcdef000001\n77,no one!\n")
    with pytest.raises(PatientLookupError, match="line 3: person_id 'no one!'"):
        lookup.person_of("1288992")


# --- cards -------------------------------------------------------------------------------------


def context(outcome: Outcome = FALLS, referral: tuple[str, bool] | None = None) -> CardContext:
    return CardContext(outcome, BAND_LABELS, "https://carerisk.example.org", "North Fire", referral)


@pytest.mark.parametrize("band", BAND_LABELS)
def test_cards_meet_the_specification(band: str) -> None:
    card = risk_card(make_result(band=band), context())
    assert card_problems(card) == []
    assert response_problems({"cards": [card]}) == []
    assert card["indicator"] == {"very high": "critical", "high": "warning"}.get(band, "info")
    assert (
        card["suggestions"][0]["label"] == "Offer a home safety and falls check by the fire service"
    )
    assert card["suggestions"][0]["isRecommended"] is (band in ("high", "very high"))
    assert card["source"]["topic"]["code"] == FALLS.at_risk_finding[0]  # type: ignore[index]
    assert card["links"][0]["url"] == "https://carerisk.example.org/ui/person#P0001234"
    resource = card["suggestions"][0]["actions"][0]["resource"]
    request = ServiceRequest.model_validate(resource)
    assert (request.intent, request.status) == ("order", "draft")
    assert request.performer[0].display == "North Fire"  # type: ignore[index]


def test_the_card_says_band_risk_and_the_reasons_that_can_be_acted_on() -> None:
    card = risk_card(make_result(), context())
    assert card["summary"] == "Falls risk high: 23% chance within 12 months"
    detail = card["detail"]
    acted, others = detail.split("What could be acted on:")[1].split("Other reasons:")
    assert "3 falls-risk medicines" in acted and "no telecare alarm" in acted
    assert "2 falls in the last 12 months" in others and "no telecare" not in others
    assert "carerisk-falls version 3" in detail and "2025-04-01" in detail


def test_no_suggestion_while_a_referral_is_open() -> None:
    card = risk_card(make_result(), context(referral=("Referred to North Fire: accepted.", True)))
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "Referred to North Fire" in card["detail"] and card_problems(card) == []
    closed = risk_card(make_result(), context(referral=("Referred: visited.", False)))
    assert closed["suggestions"] and "visited" in closed["detail"]


def test_a_long_title_still_gives_a_short_summary() -> None:
    long = Outcome(
        name="long_outcome", title="A very long outcome title " * 6, predicts="something",
        horizon_months=12, cohort=Cohort(18, "adults"), label=FALLS.label, bands=FALLS.bands,
        capacity_unit="people",
    )  # fmt: skip
    card = risk_card(make_result(outcome="long_outcome"), context(long))
    assert len(card["summary"]) < 140 and card_problems(card) == []
    assert card["source"]["topic"]["system"] == "urn:carerisk:outcome"


def test_markdown_in_labels_is_shown_as_written() -> None:
    assert escape("*bold* _x_ [link](http://x) <b>") == r"\*bold\* \_x\_ \[link\](http://x) \<b\>"
    assert indicator("unknown", BAND_LABELS) == "info"


def test_discovery_meets_the_specification() -> None:
    found = discovery([FALLS, COMPLEX_DEPENDENCY])
    assert discovery_problems(found) == []
    assert [s["id"] for s in found["services"]] == ["carerisk-falls", "carerisk-complex-dependency"]
    assert {s["hook"] for s in found["services"]} == {"patient-view"}


def test_the_service_request_of_a_referral_validates(tmp_path: Path) -> None:
    store = ReferralStore(Home(tmp_path).referrals_path)
    made = store.create(new())
    doc = referral_request(made, FALLS)
    request = ServiceRequest.model_validate(doc)
    assert (request.status, request.intent) == ("active", "order")
    assert request.category[0].text == "Home safety and falls prevention check"  # type: ignore[index]
    assert request.reasonCode[0].coding[0].code == FALLS.at_risk_finding[0]  # type: ignore[index]
    assert request.supportingInfo[0].reference == "#risk"  # type: ignore[index]
    assert request.contained[0].get_resource_type() == "RiskAssessment"  # type: ignore[index]
    assert "Dr A Patel" in request.note[0].text  # type: ignore[index]
    assert "probabilityDecimal" not in json.dumps(doc)
    store.move(made.id, StatusChange(status="accepted"), FIRE)
    assert referral_request(store.move(made.id, visit(), FIRE), FALLS)["status"] == "completed"
    declined = store.create(new("Pabcdef000009"))
    gone = store.move(declined.id, StatusChange(status="declined"), FIRE)
    assert referral_request(gone, FALLS)["status"] == "revoked"


def test_r4_does_not_allow_a_risk_assessment_as_reason_reference() -> None:
    """Why the RiskAssessment is under supportingInfo (referrals/fhir_requests.py)."""
    allowed = ServiceRequest.model_fields["reasonReference"].json_schema_extra
    assert "RiskAssessment" not in allowed["enum_reference_types"]  # type: ignore[index]
    supporting = ServiceRequest.model_fields["supportingInfo"].json_schema_extra
    assert supporting["enum_reference_types"] == ["Resource"]  # type: ignore[index]
