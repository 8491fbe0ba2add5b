"""API keys: issued once, stored only as a hash, checked in constant time.

A key looks like ``crk_<key_id>_<secret>``: `key_id` is 12 hex characters used to find the
record, `secret` is 32 random bytes from `secrets` (urlsafe base64). The full key is returned
by `KeyStore.add` once and never stored.

Hash choice: SHA-256 of the full key. The secret carries 256 bits of entropy, so there is
nothing to guess and a slow password hash (scrypt, PBKDF2) or salt would add only per-request
latency; SHA-256 keeps `authenticate` fast on every request. The stored hash is compared with
`hmac.compare_digest`; an unknown key_id still runs a hash and a comparison against a dummy
value so the timing does not reveal which key ids exist.

Practice scope: a GP key acts for the practices it names (their registered patients) or, issued
with `all_practices` (a federation or a data-sharing agreement), for every practice. Its
`Principal.practices` is that set, or None when no practice limits the key (every other role,
and an all-practices GP key). A GP key stored without a scope (issued before scopes existed)
acts for no practice: it must be issued again.

The store is a JSON file (mode 0600) written atomically (temporary file, fsync, rename) under
an exclusive `flock`, so `carerisk keys` and running service workers can share it; a reader
reloads it when the file changes, so a revocation takes effect on the next request.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from features.home import Home
from serving.roles import ROLES

PREFIX = "crk"
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
_ORG = re.compile(r"^[\w .,&'()/-]{1,100}$")
PRACTICE = re.compile(r"^[A-Za-z0-9-]{1,20}$")  # a practice code, e.g. M85001
SCOPED_ROLE = "gp"  # the role whose keys are limited to practices
ALL_PRACTICES = "all_practices"  # the audited scope of a key for every practice
_DUMMY_HASH = hashlib.sha256(b"carerisk-no-such-key").hexdigest()

AuthReason = Literal["ok", "malformed", "unknown", "bad_secret", "revoked", "expired"]


class KeyStoreError(Exception):
    """The key file is unreadable, malformed, or a request to it is invalid."""


@dataclass(frozen=True)
class Principal:
    key_id: str
    org: str
    role: str
    practices: frozenset[str] | None = None  # the practices acted for; None: not limited

    def covers(self, practice: str | None) -> bool:
        """True when this caller may see the people of `practice`."""
        return self.practices is None or practice in self.practices

    @property
    def scope(self) -> str | None:
        """The practice scope as audited: ``practices:A1,B2``, ``all_practices`` for a GP key
        for every practice, None for a role no practice limits."""
        if self.practices is not None:
            return "practices:" + ",".join(sorted(self.practices))
        return ALL_PRACTICES if self.role == SCOPED_ROLE else None


@dataclass(frozen=True)
class KeyRecord:
    """What is stored for a key: never the key itself."""

    key_id: str
    org: str
    role: str
    key_hash: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    practices: tuple[str, ...] = ()  # a GP key's practices
    all_practices: bool = False  # a GP key for every practice

    def principal(self) -> Principal:
        """Who this key acts as, with its practice scope."""
        limited = self.role == SCOPED_ROLE and not self.all_practices
        practices = frozenset(self.practices) if limited else None
        return Principal(self.key_id, self.org, self.role, practices)

    def status(self, now: dt.datetime) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and _parse_time(self.expires_at) <= now:
            return "expired"
        return "active"

    def public(self, now: dt.datetime) -> dict[str, Any]:
        """The record without its hash, for listing."""
        info = {k: v for k, v in asdict(self).items() if k != "key_hash"}
        info["practices"] = list(self.practices)
        info["scope"] = self.principal().scope
        info["status"] = self.status(now)
        return info


@dataclass(frozen=True)
class AuthResult:
    principal: Principal | None
    reason: AuthReason

    @property
    def ok(self) -> bool:
        return self.principal is not None


def hash_key(presented: str) -> str:
    return hashlib.sha256(presented.encode("utf-8")).hexdigest()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KeyStore:
    """API keys in one JSON file, e.g. ``<home>/keys.json``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._cache: dict[str, KeyRecord] = {}
        self._cache_stamp: tuple[int, int, int] | None = None
        self._mutex = threading.Lock()

    @classmethod
    def in_home(cls, home: Path) -> KeyStore:
        return cls(Home(Path(home)).keys_path)

    def add(
        self,
        org: str,
        role: str,
        *,
        expires_at: dt.datetime | None = None,
        practices: Sequence[str] = (),
        all_practices: bool = False,
    ) -> tuple[str, str]:
        """Issue a key; returns (key_id, full key). The full key is not stored anywhere. A GP key
        names the practices it acts for, or is for `all_practices`; no other role takes a
        practice scope."""
        org = _check_org(org)
        _check_role(role)
        scope = _check_scope(role, practices, all_practices)
        expiry = _iso(_aware(expires_at, "expires_at")) if expires_at else None
        with self._exclusive():
            records = self._read()
            key_id = _new_key_id(records)
            full_key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
            records[key_id] = KeyRecord(
                key_id=key_id,
                org=org,
                role=role,
                key_hash=hash_key(full_key),
                created_at=_iso(utc_now()),
                expires_at=expiry,
                practices=scope,
                all_practices=all_practices,
            )
            self._write(records)
        return key_id, full_key

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark a key revoked; raises KeyStoreError for an unknown id."""
        with self._exclusive():
            records = self._read()
            if key_id not in records:
                raise KeyStoreError(f"{self.path}: no key with key_id {key_id!r}")
            record = records[key_id]
            if not record.revoked_at:
                record = replace(record, revoked_at=_iso(utc_now()))
                records[key_id] = record
                self._write(records)
        return record

    def list_one(self, key_id: str) -> KeyRecord:
        """The record of one key; raises KeyStoreError for an unknown id."""
        record = self._records().get(key_id)
        if record is None:
            raise KeyStoreError(f"{self.path}: no key with key_id {key_id!r}")
        return record

    def list(self) -> list[KeyRecord]:
        return sorted(self._records().values(), key=lambda r: (r.created_at, r.key_id))

    def check(self, presented: str, *, now: dt.datetime | None = None) -> AuthResult:
        """Authenticate with the reason for a refusal (malformed, unknown, revoked, ...)."""
        now = utc_now() if now is None else _aware(now, "now")
        parts = _split_key(presented)
        if parts is None:
            hmac.compare_digest(hash_key(str(presented)), _DUMMY_HASH)
            return AuthResult(None, "malformed")
        key_id = parts[0]
        record = self._records().get(key_id)
        stored = record.key_hash if record else _DUMMY_HASH
        matches = hmac.compare_digest(hash_key(presented), stored)
        if record is None:
            return AuthResult(None, "unknown")
        if not matches:
            return AuthResult(None, "bad_secret")
        status = record.status(now)
        if status != "active":
            return AuthResult(None, "revoked" if status == "revoked" else "expired")
        return AuthResult(record.principal(), "ok")

    def authenticate(self, presented: str, *, now: dt.datetime | None = None) -> Principal | None:
        """The principal for a valid, live key; None otherwise (see `check` for why)."""
        return self.check(presented, now=now).principal

    # -- file handling --

    def _records(self) -> dict[str, KeyRecord]:
        """Records, re-read when the file changed since the last read."""
        with self._mutex:
            stamp = _stamp(self.path)
            if stamp != self._cache_stamp:
                self._cache = self._read()
                self._cache_stamp = stamp
            return self._cache

    def _read(self) -> dict[str, KeyRecord]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise KeyStoreError(f"{self.path}: cannot read key file: {exc}") from exc
        try:
            rows = json.loads(text)["keys"]
            return {row["key_id"]: _record(row) for row in rows}
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"{self.path}: malformed key file: {exc}") from exc

    def _write(self, records: dict[str, KeyRecord]) -> None:
        payload = {"version": 1, "keys": [asdict(r) for r in records.values()]}
        atomic_write(self.path, json.dumps(payload, indent=2, sort_keys=True) + "\n")

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the store's exclusive lock; file errors become KeyStoreError."""
        try:
            _make_home(self.path.parent)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KeyStoreError(f"{self.path}: cannot write key file: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        except OSError as exc:
            raise KeyStoreError(f"{self.path}: cannot write key file: {exc}") from exc
        finally:
            os.close(fd)


def atomic_write(path: Path, text: str) -> None:
    """Write text to path with mode 0600: temporary file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _make_home(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _split_key(presented: str) -> tuple[str, str] | None:
    if not isinstance(presented, str):
        return None
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    if not _KEY_ID.match(parts[1]) or not _SECRET.match(parts[2]):
        return None
    return parts[1], parts[2]


def _new_key_id(records: dict[str, KeyRecord]) -> str:
    while True:
        key_id = secrets.token_hex(6)
        if key_id not in records:
            return key_id


def _check_org(org: str) -> str:
    org = org.strip()
    if not _ORG.match(org):
        raise KeyStoreError(
            f"org {org!r} must be 1-100 letters, digits, spaces or . , & ' ( ) / - _"
        )
    return org


def _record(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(**{**row, "practices": tuple(row.get("practices", ()))})


def _check_scope(role: str, practices: Sequence[str], all_practices: bool) -> tuple[str, ...]:
    """The practices of a key, checked: a GP key needs a scope, other roles take none."""
    codes = tuple(sorted({p.strip() for p in practices}))
    bad = [p for p in codes if not PRACTICE.match(p)]
    if bad:
        raise KeyStoreError(f"practice code {bad[0]!r} must be 1-20 letters, digits or -")
    if role != SCOPED_ROLE:
        if codes or all_practices:
            raise KeyStoreError(f"only a {SCOPED_ROLE} key takes a practice scope, not {role}")
        return ()
    if bool(codes) == all_practices:
        raise KeyStoreError(
            f"a {SCOPED_ROLE} key acts either for the practices it names (--practice) or for "
            "all practices (--all-practices)"
        )
    return codes


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise KeyStoreError(f"role {role!r} is not one of {', '.join(ROLES)}")


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise KeyStoreError(f"{name} must carry a time zone (UTC), got {value.isoformat()}")
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)
