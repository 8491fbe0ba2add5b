"""CDS Hooks client authentication: the client's signed JWT, checked against the keys the admin
registered for that client (HL7 CDS Hooks 2.0, "Trusting CDS Clients").

A CDS client (a GP clinical system) sends ``Authorization: Bearer <JWT>`` with every call. The
service accepts the token only when all of these hold:

- the header names ``typ: JWT``, a ``kid``, and an asymmetric ``alg`` (ES384 and RS384, which
  the specification recommends, and ES256/ES512/RS256/RS512): never ``none``, never an HMAC;
- ``iss`` is a client the admin registered (`CdsClients`, ``<home>/cds_clients.json``, written by
  ``carerisk referrals cds-clients add``), and ``kid`` names one of that client's public keys,
  whose type and curve fit ``alg``; a ``jku`` header must be one of the URLs registered for the
  client (the service never fetches a key set: the admin registers it, as the specification
  allows out of band, so a token cannot point the service at keys of its choosing);
- the signature verifies (PyJWT over cryptography);
- ``aud`` is the URL of the endpoint called (``<public_url>/cds-services/<id>``);
- ``exp``, ``iat`` and ``jti`` are present, the token has not expired, was not issued in the
  future and lives at most `MAX_LIFETIME` (so the ids kept against replay stay few);
- ``jti`` was not seen before from that issuer (kept in the referral store until the token
  expires, shared by every server worker).

Any failure is `TokenRefused` (HTTP 401) with a reason that names the check, never the token.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from features.home import Home
from serving.keys import PRACTICE, Principal, atomic_write

ALGORITHMS: tuple[str, ...] = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")
CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
LEEWAY_SECONDS = 30  # clocks of client and service differ a little
MAX_LIFETIME_SECONDS = 600
MIN_RSA_BITS = 2048
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ISSUER = re.compile(r"^https?://[^\s]{1,500}$")
_ORG = re.compile(r"^[\w .,&'()/-]{1,100}$")

FirstUse = Callable[[str, str, int], bool]  # (issuer, jti, exp) -> True the first time


class TokenRefused(Exception):
    """The client's token is missing or fails a check; the message says which (HTTP 401)."""


class CdsClientError(Exception):
    """A client registration is invalid, or the client file cannot be read or written."""


@dataclass(frozen=True)
class CdsClient:
    """A registered CDS client: who it is (issuer), whom it acts for, and its public keys."""

    id: str
    iss: str
    org: str
    jwks: dict[str, Any]
    jku: tuple[str, ...] = ()
    added_at: str = ""
    # the practices whose patients it may see (a GP system's own); None: every practice (also a
    # client registered before clients had a scope)
    practices: tuple[str, ...] | None = None

    def key(self, kid: str) -> dict[str, Any] | None:
        for jwk in self.jwks.get("keys", []):
            if jwk.get("kid") == kid:
                return dict(jwk)
        return None

    def principal(self) -> Principal:
        """Who the client's calls are audited as (role cds_client), with its practice scope."""
        practices = None if self.practices is None else frozenset(self.practices)
        return Principal(key_id=f"cds-{self.id}", org=self.org, role="cds_client",
                         practices=practices)  # fmt: skip

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "iss": self.iss, "org": self.org, "jku": list(self.jku),
            "kids": [k.get("kid") for k in self.jwks.get("keys", [])], "added_at": self.added_at,
            "practices": None if self.practices is None else list(self.practices),
        }  # fmt: skip


@dataclass
class CdsClients:
    """The registered clients in one JSON file (mode 0600, written atomically under a lock, re-read
    when it changes, so a client removed stops working on its next call)."""

    path: Path
    _cache: dict[str, CdsClient] = field(default_factory=dict, repr=False)
    _stamp: tuple[int, int, int] | None = field(default=None, repr=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def in_home(cls, home: Path) -> CdsClients:
        return cls(Home(Path(home)).cds_clients_path)

    def add(
        self,
        iss: str,
        org: str,
        jwks: dict[str, Any],
        jku: Sequence[str] = (),
        practices: Sequence[str] | None = None,
    ) -> CdsClient:
        """Register (or replace) the client with issuer `iss`; its keys are checked first. With
        `practices`, it sees only the patients of those practices."""
        if not _ISSUER.match(iss):
            raise CdsClientError(f"issuer {iss!r} must be an http(s) URL")
        if not _ORG.match(org.strip()):
            raise CdsClientError(
                f"organisation {org!r} must be 1-100 letters, digits or . , & ' ( ) / -"
            )
        for url in jku:
            if not _ISSUER.match(url):
                raise CdsClientError(f"jku {url!r} must be an http(s) URL")
        checked = check_jwks(jwks)
        with self._exclusive():
            clients = self._read()
            client = CdsClient(
                id=secrets.token_hex(6), iss=iss, org=org.strip(), jwks=checked, jku=tuple(jku),
                added_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                practices=_practices(practices),
            )  # fmt: skip
            clients[iss] = client
            self._write(clients)
        return client

    def remove(self, iss: str) -> CdsClient:
        with self._exclusive():
            clients = self._read()
            if iss not in clients:
                raise CdsClientError(f"{self.path}: no client with issuer {iss!r}")
            client = clients.pop(iss)
            self._write(clients)
        return client

    def list(self) -> list[CdsClient]:
        return sorted(self._clients().values(), key=lambda c: c.iss)

    def by_issuer(self, iss: str) -> CdsClient | None:
        return self._clients().get(iss)

    def _clients(self) -> dict[str, CdsClient]:
        with self._mutex:
            stamp = _file_stamp(self.path)
            if stamp != self._stamp:
                self._cache, self._stamp = self._read(), stamp
            return self._cache

    def _read(self) -> dict[str, CdsClient]:
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))["clients"]
            return {
                row["iss"]: CdsClient(
                    **{
                        **row,
                        "jku": tuple(row.get("jku", ())),
                        "practices": _practices(row.get("practices")),
                    }
                )
                for row in rows
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CdsClientError(f"{self.path}: cannot read the CDS clients: {exc}") from exc

    def _write(self, clients: dict[str, CdsClient]) -> None:
        rows = [{**asdict(c), "jku": list(c.jku)} for c in clients.values()]
        atomic_write(self.path, json.dumps({"version": 1, "clients": rows}, indent=2) + "\n")

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(
                self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
            )
        except OSError as exc:
            raise CdsClientError(f"{self.path}: cannot write the CDS clients: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def check_jwks(jwks: Any) -> dict[str, Any]:
    """A JWK Set of public signing keys: RSA of 2048 bits or more, or EC on P-256/384/521, each
    with a unique kid and no private part. Returns it with only its keys."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise CdsClientError('a JWK Set is a JSON object with a non-empty "keys" list')
    kids: set[str] = set()
    for i, jwk in enumerate(jwks["keys"]):
        where = f"key {i}"
        if not isinstance(jwk, dict):
            raise CdsClientError(f"{where}: not a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or kid in kids:
            raise CdsClientError(f"{where}: needs a kid of its own")
        kids.add(kid)
        if PRIVATE_MEMBERS & set(jwk):
            raise CdsClientError(
                f"{where} ({kid}): holds a private or symmetric key; register public keys only"
            )
        if jwk.get("kty") not in ("RSA", "EC"):
            raise CdsClientError(f"{where} ({kid}): kty must be RSA or EC")
        if "alg" in jwk and jwk["alg"] not in ALGORITHMS:
            raise CdsClientError(
                f"{where} ({kid}): alg {jwk['alg']!r} is not one of {', '.join(ALGORITHMS)}"
            )
        try:
            key = jwt.PyJWK(jwk).key
        except jwt.PyJWTError as exc:
            raise CdsClientError(f"{where} ({kid}): not a usable key: {exc}") from exc
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise CdsClientError(f"{where} ({kid}): RSA keys need {MIN_RSA_BITS} bits or more")
    return {"keys": [dict(k) for k in jwks["keys"]]}


def verify_client_token(
    token: str,
    clients: CdsClients,
    audience: str,
    first_use: FirstUse,
) -> tuple[CdsClient, dict[str, Any]]:
    """The registered client that signed `token` for `audience`, and the token's claims."""
    header = _header(token)
    alg, kid = header["alg"], header["kid"]
    client = _client(token, clients)
    if "jku" in header and header["jku"] not in client.jku:
        raise TokenRefused("the token's jku is not a key set URL registered for this client")
    jwk = client.key(kid)
    if jwk is None:
        raise TokenRefused(f"kid {kid!r} is not a key registered for this client")
    key = _key_for(jwk, alg)
    try:
        claims = jwt.decode(
            token, key, algorithms=[alg], audience=audience, issuer=client.iss,
            leeway=LEEWAY_SECONDS, options={"require": ["iss", "aud", "exp", "iat", "jti"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise TokenRefused("the token has expired") from None
    except jwt.InvalidAudienceError:
        raise TokenRefused(f"the token's aud is not this endpoint ({audience})") from None
    except jwt.ImmatureSignatureError:
        raise TokenRefused("the token was issued in the future") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRefused(f"the token has no {exc.claim} claim") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("the token's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"the token is invalid: {type(exc).__name__}") from None
    _check_lifetime(claims)
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= 255:
        raise TokenRefused("the token's jti must be a string of 1 to 255 characters")
    if not first_use(client.iss, jti, int(claims["exp"])):
        raise TokenRefused("the token was used before (its jti is replayed)")
    return client, claims


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer`` header; TokenRefused when there is none."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRefused("a signed JWT is needed (Authorization: Bearer <JWT>)")
    return token.strip()


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("the bearer token is not a JWT") from None
    if header.get("typ") != "JWT":
        raise TokenRefused("the token's header must say typ JWT")
    if header.get("alg") not in ALGORITHMS:
        raise TokenRefused(f"the token's alg must be one of {', '.join(ALGORITHMS)}")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise TokenRefused("the token's header must name its key (kid)")
    return header


def _client(token: str, clients: CdsClients) -> CdsClient:
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRefused("the token's claims cannot be read") from None
    iss = unverified.get("iss")
    client = clients.by_issuer(iss) if isinstance(iss, str) else None
    if client is None:
        raise TokenRefused("the token's issuer is not a registered CDS client")
    return client


def _key_for(jwk: dict[str, Any], alg: str) -> Any:
    if "alg" in jwk and jwk["alg"] != alg:
        raise TokenRefused(f"the key {jwk['kid']!r} is registered for {jwk['alg']}, not {alg}")
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except jwt.PyJWTError:
        raise TokenRefused(f"the key {jwk['kid']!r} cannot verify {alg}") from None
    if alg.startswith("RS") and not isinstance(key, rsa.RSAPublicKey):
        raise TokenRefused(f"{alg} needs an RSA key")
    if alg.startswith("ES") and not (
        isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == CURVES[alg]
    ):
        raise TokenRefused(f"{alg} needs an EC key on {CURVES[alg]}")
    return key


def _check_lifetime(claims: dict[str, Any]) -> None:
    try:
        exp, iat = float(claims["exp"]), float(claims["iat"])
    except (TypeError, ValueError):
        raise TokenRefused("the token's exp and iat must be numbers") from None
    if exp - iat > MAX_LIFETIME_SECONDS:
        raise TokenRefused(f"the token may live at most {MAX_LIFETIME_SECONDS} seconds")


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _practices(codes: Sequence[str] | None) -> tuple[str, ...] | None:
    """A client's practice codes, checked (None: every practice)."""
    if codes is None:
        return None
    checked = tuple(sorted({str(c).strip() for c in codes}))
    bad = [c for c in checked if not PRACTICE.match(c)]
    if bad or not checked:
        raise CdsClientError(f"practice codes must be 1-20 letters, digits or -: {list(codes)}")
    return checked
