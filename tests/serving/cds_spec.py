"""HL7 CDS Hooks 2.0 as the tests read it: a test client that signs its JWTs, the
specification's own patient-view request, and checks of a response written from the
specification's tables (sections "Discovery", "CDS Service Response", "Card Attributes",
"Source", "Suggestion", "Action", "Link", "Data Types: Coding", "Use of JSON" and "Trusting CDS
Clients"), not from serving/cds_hooks.py.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

# "Calling a CDS Service", Example: the request body as the specification prints it.
SPEC_PATIENT_VIEW_REQUEST: dict[str, Any] = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://hooks.smarthealthit.org:9080",
    "hook": "patient-view",
    "fhirAuthorization": {
        "access_token": "some-opaque-fhir-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read user/Observation.read",
        "subject": "cds-service4",
    },
    "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
    "prefetch": {
        "patientToGreet": {
            "resourceType": "Patient",
            "gender": "male",
            "birthDate": "1925-12-23",
            "id": "1288992",
            "active": True,
        }
    },
}
SPEC_PATIENT_ID = "1288992"


def spec_request(**context: str) -> dict[str, Any]:
    """The specification's example with a fresh hookInstance (and context fields replaced)."""
    body = copy.deepcopy(SPEC_PATIENT_VIEW_REQUEST)
    body["hookInstance"] = str(uuid.uuid4())
    body["context"].update(context)
    return body


@dataclass
class SigningClient:
    """A CDS client holding its private key: ES384 (P-384) or RS384 (RSA 2048)."""

    iss: str = "https://ehr.example.org/"
    alg: str = "ES384"
    kid: str = "ehr-key-1"
    key: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.key is None:
            curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
            self.key = (
                ec.generate_private_key(curves[self.alg])
                if self.alg in curves
                else rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )

    def jwks(self) -> dict[str, Any]:
        public = self.key.public_key()
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk = json.loads(algorithm.to_jwk(public))
        jwk.update(kid=self.kid, use="sig", alg=self.alg)
        return {"keys": [jwk]}

    def token(
        self, aud: str, *, lifetime: int = 60, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A JWT as the specification's "Trusting CDS Clients" describes: header alg, kid, typ;
        claims iss, aud, exp, iat, jti (any of them replaced by `claims`, or dropped with None)."""
        now = int(time.time())
        payload = {"iss": self.iss, "aud": aud, "exp": now + lifetime, "iat": now,
                   "jti": str(uuid.uuid4()), **claims}  # fmt: skip
        payload = {k: v for k, v in payload.items() if v is not None}
        header = {"kid": self.kid, "typ": "JWT", **(headers or {})}
        header = {k: v for k, v in header.items() if v is not None or k == "typ"}  # PyJWT drops a
        # typ of None itself
        return jwt.encode(payload, self.key, algorithm=self.alg, headers=header)

    def bearer(self, aud: str, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(aud, **kw)}"}


def unsigned_token(aud: str, iss: str, kid: str) -> str:
    """alg none: "JWTs SHALL NOT be signed using the none algorithm"."""
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + 60, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(payload, None, algorithm="none", headers={"kid": kid, "typ": "JWT"})


def hmac_token(aud: str, iss: str, kid: str, secret: str = "x" * 32) -> str:
    """HS256: "JWTs SHALL NOT be signed using any symmetric algorithm"."""
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + 60, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid, "typ": "JWT"})


# --- response checks, from the specification's tables -----------------------------------------

INDICATORS = {"info", "warning", "critical"}  # "in order of increasing urgency"
SELECTION = {"at-most-one", "any"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}
CARD_FIELDS = {"uuid", "summary", "detail", "indicator", "source", "suggestions",
               "selectionBehavior", "overrideReasons", "links", "extension"}  # fmt: skip
SOURCE_FIELDS = {"label", "url", "icon", "topic", "extension"}
SUGGESTION_FIELDS = {"label", "uuid", "isRecommended", "actions", "extension"}
ACTION_FIELDS = {"type", "description", "resource", "resourceId", "extension"}
LINK_FIELDS = {"label", "url", "type", "appContext", "autolaunchable", "extension"}
SERVICE_FIELDS = {"hook", "title", "description", "id", "prefetch", "usageRequirements",
                  "extension"}  # fmt: skip


def empty_or_null(value: Any, path: str = "$", allow: frozenset[str] = frozenset()) -> list[str]:
    """ "JSON elements SHALL NOT be null ... SHALL NOT be empty": null, "", [] or {} anywhere
    (but at the paths in `allow`, such as an empty cards array)."""
    found = []
    if path not in allow and (value is None or value in ("", [], {})):
        found.append(f"{path} is null or empty")
    if isinstance(value, dict):
        for key, item in value.items():
            found += empty_or_null(item, f"{path}.{key}", allow)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += empty_or_null(item, f"{path}[{i}]", allow)
    return found


def is_absolute_url(value: Any) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return bool(parts and parts.scheme in ("http", "https") and parts.netloc)


def coding_problems(coding: Any, where: str, display_required: bool) -> list[str]:
    """Coding: code REQUIRED, system REQUIRED, display CONDITIONAL (required for override
    reasons, optional for a topic)."""
    if not isinstance(coding, dict):
        return [f"{where} is not a Coding object"]
    problems = [f"{where}.{k} must be a string" for k in ("code", "system")
                if not isinstance(coding.get(k), str)]  # fmt: skip
    if display_required and not isinstance(coding.get("display"), str):
        problems.append(f"{where}.display is required")
    return problems


def card_problems(card: dict[str, Any]) -> list[str]:
    """Every way `card` breaks the specification's card, source, suggestion, action and link
    tables."""
    p: list[str] = [f"card has a field the specification does not define: {k}"
                    for k in set(card) - CARD_FIELDS]  # fmt: skip
    if "uuid" in card and not isinstance(card["uuid"], str):
        p.append("uuid must be a string")
    summary = card.get("summary")
    if not isinstance(summary, str) or not summary:
        p.append("summary is required")
    elif len(summary) >= 140:
        p.append(f"summary must be under 140 characters ({len(summary)})")
    if "detail" in card and not isinstance(card["detail"], str):
        p.append("detail must be a (markdown) string")
    if card.get("indicator") not in INDICATORS:
        p.append(f"indicator {card.get('indicator')!r} is not info, warning or critical")
    p += source_problems(card.get("source"))
    suggestions = card.get("suggestions")
    if suggestions is not None:
        if card.get("selectionBehavior") not in SELECTION:
            p.append("suggestions need selectionBehavior at-most-one or any")
        if not isinstance(suggestions, list):
            p.append("suggestions must be an array")
        else:
            for i, s in enumerate(suggestions):
                p += suggestion_problems(s, f"suggestions[{i}]")
            recommended = [s for s in suggestions if s.get("isRecommended") is True]
            if len(recommended) > 1 and card.get("selectionBehavior") != "any":
                p.append("several suggestions are recommended only when selectionBehavior is any")
    for i, reason in enumerate(card.get("overrideReasons", [])):
        p += coding_problems(reason, f"overrideReasons[{i}]", display_required=True)
    for i, link in enumerate(card.get("links", [])):
        p += link_problems(link, f"links[{i}]")
    return p


def source_problems(source: Any) -> list[str]:
    if not isinstance(source, dict):
        return ["source is required and is an object"]
    p = [f"source has an undefined field {k}" for k in set(source) - SOURCE_FIELDS]
    if not isinstance(source.get("label"), str) or not source["label"]:
        p.append("source.label is required")
    for name in ("url", "icon"):
        if name in source and not is_absolute_url(source[name]):
            p.append(f"source.{name} must be an absolute URL")
    if "topic" in source:
        p += coding_problems(source["topic"], "source.topic", display_required=False)
    return p


def suggestion_problems(s: Any, where: str) -> list[str]:
    if not isinstance(s, dict):
        return [f"{where} is not an object"]
    p = [f"{where} has an undefined field {k}" for k in set(s) - SUGGESTION_FIELDS]
    if not isinstance(s.get("label"), str) or not s["label"]:
        p.append(f"{where}.label is required")
    if "uuid" in s and not isinstance(s["uuid"], str):
        p.append(f"{where}.uuid must be a string")
    if "isRecommended" in s and not isinstance(s["isRecommended"], bool):
        p.append(f"{where}.isRecommended must be a boolean")
    for i, action in enumerate(s.get("actions", [])):
        p += action_problems(action, f"{where}.actions[{i}]")
    return p


def action_problems(a: Any, where: str) -> list[str]:
    if not isinstance(a, dict):
        return [f"{where} is not an object"]
    p = [f"{where} has an undefined field {k}" for k in set(a) - ACTION_FIELDS]
    if a.get("type") not in ACTION_TYPES:
        p.append(f"{where}.type must be create, update or delete")
    if not isinstance(a.get("description"), str) or not a["description"]:
        p.append(f"{where}.description is required")
    if a.get("type") == "create":
        resource = a.get("resource")
        if not isinstance(resource, dict) or "resourceType" not in resource:
            p.append(f"{where}: a create action SHALL contain a new FHIR resource")
    return p


def link_problems(link: Any, where: str) -> list[str]:
    if not isinstance(link, dict):
        return [f"{where} is not an object"]
    p = [f"{where} has an undefined field {k}" for k in set(link) - LINK_FIELDS]
    if not isinstance(link.get("label"), str) or not link["label"]:
        p.append(f"{where}.label is required")
    if not isinstance(link.get("url"), str) or not link["url"]:
        p.append(f"{where}.url is required")
    if link.get("type") not in LINK_TYPES:
        p.append(f"{where}.type must be absolute or smart")
    if link.get("type") == "absolute" and not is_absolute_url(link.get("url")):
        p.append(f"{where}: an absolute link's url must be absolute")
    if "appContext" in link and link.get("type") != "smart":
        p.append(f"{where}.appContext is valid only for smart links")
    if "autolaunchable" in link and not isinstance(link["autolaunchable"], bool):
        p.append(f"{where}.autolaunchable must be a boolean")
    return p


def response_problems(body: Any) -> list[str]:
    """The service response: an object with a cards array (maybe empty) and optionally
    systemActions."""
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return ["the response must be an object with a cards array"]
    p = [f"the response has an undefined field {k}"
         for k in set(body) - {"cards", "systemActions", "extension"}]  # fmt: skip
    p += empty_or_null(body, allow=frozenset({"$.cards"}))
    for i, card in enumerate(body["cards"]):
        p += [f"cards[{i}]: {problem}" for problem in card_problems(card)]
    return p


def discovery_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("services"), list):
        return ["discovery must be an object with a services array"]
    p = empty_or_null(body, allow=frozenset({"$.services"}))
    for i, service in enumerate(body["services"]):
        where = f"services[{i}]"
        p += [f"{where} has an undefined field {k}" for k in set(service) - SERVICE_FIELDS]
        for name in ("hook", "description", "id"):
            if not isinstance(service.get(name), str) or not service[name]:
                p.append(f"{where}.{name} is required")
        prefetch = service.get("prefetch", {})
        if not isinstance(prefetch, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in prefetch.items()
        ):
            p.append(f"{where}.prefetch maps keys to FHIR query strings")
    return p
