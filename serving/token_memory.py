"""The ids of CDS Hooks client tokens already used, so a replayed token is refused by every worker.

Kept in the home's referral file (``<home>/referrals.sqlite``, table ``cds_token``), where homes
written before this store had its own class keep them too, so such a home opens unchanged and
its recent token ids still count. Each call opens its own connection and records an id in one
``BEGIN IMMEDIATE`` transaction, so two workers cannot both take the same id as new.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from functools import lru_cache
from pathlib import Path

from referrals.store import open_home_sqlite

KEPT_AFTER_EXPIRY = 300  # seconds a used token id is kept after the token's expiry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cds_token (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX IF NOT EXISTS cds_token_expiry ON cds_token (expires);
"""


class TokenMemoryError(Exception):
    """The token memory cannot be read or written."""


class UsedTokens:
    """Token ids seen, per issuer, in one SQLite file (see the module's docstring)."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._ready = False

    def first_use(self, issuer: str, jti: str, expires: int, now: int | None = None) -> bool:
        """Record a client token's id; False when it was seen before (a replay). An id is
        forgotten KEPT_AFTER_EXPIRY seconds after its token expired (well past any clock
        leeway), when the token is refused as expired anyway."""
        now = int(time.time()) if now is None else now
        try:
            with closing(self._connect()) as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM cds_token WHERE expires < ?", (now - KEPT_AFTER_EXPIRY,))
                try:
                    conn.execute(
                        "INSERT INTO cds_token (issuer, jti, expires) VALUES (?, ?, ?)",
                        (issuer, jti, expires),
                    )
                except sqlite3.IntegrityError:
                    conn.execute("ROLLBACK")
                    return False
                conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            raise TokenMemoryError(f"token memory {self.path}: {exc}") from exc
        return True

    def _connect(self) -> sqlite3.Connection:
        conn = open_home_sqlite(self.path, self.busy_timeout, None if self._ready else _SCHEMA)
        self._ready = True
        return conn


@lru_cache(maxsize=8)
def used_tokens_at(path: Path) -> UsedTokens:
    """One token memory per file in a process (it remembers that its table exists)."""
    return UsedTokens(path)
