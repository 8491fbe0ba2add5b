"""The audit log: an append-only hash chain of every scoring request.

Storage: SQLite (stdlib) at ``<home>/audit.sqlite`` in WAL mode with ``synchronous=FULL``; rows
cannot be updated or deleted through SQL (triggers refuse it). Each record holds seq, UTC time,
org, key_id, role, endpoint, outcome (of the request: ok, denied, error, ...), the pseudonymised
person ids, the predicted outcome, model name and version, the bands returned and the HTTP
status, the client's address, how the key presented was judged (`key_check`: ok, missing,
malformed, unknown, bad_secret, revoked, expired, or unchecked when the caller's address was
refused first), for a grouped record of refusals, how many requests it stands for (`count`), and
for a score the date of the snapshot it came from (`snapshot_date`), for a GP key its practice
scope (`scope`: ``practices:<codes>`` or ``all_practices``), then ``prev_hash`` and
``hash = sha256(prev_hash + canonical JSON of the record)``. The last five were added later: a
record without them (NULL) is hashed without them, so records written before they existed still
verify. Feature values and probabilities are never recorded:
`AuditEntry` has no field for them. The key id is the one *presented* (`crk_<id>_...`); when
`key_check` is not ok it was not verified, and the secret is never recorded.

`AuditLog.append` commits (and fsyncs) before it returns and raises `AuditUnavailable` when it
cannot, so the service can answer 503 instead of returning an unaudited score. Appends from
several processes are serialised by an exclusive ``flock`` on ``audit.sqlite.lock`` plus
SQLite's ``BEGIN IMMEDIATE``. After each commit the latest seq and hash are written atomically
to the anchor ``audit.head`` (rewritten in place), so `verify` can tell a truncated tail from a
short log.

The service appends through an `AuditWriter`: one thread that commits whatever has queued up
while it was busy as one group (one transaction, one anchor write: three fsyncs for the group
rather than three for each record). A caller, a thread or a coroutine, gets its record only once
the group holding it is durable; when a group cannot be committed, every caller in it gets
`AuditUnavailable`.

The chain is unkeyed: it proves the log was not edited, reordered or cut *relative to the
anchor*. Someone able to rewrite both the database and the anchor (or delete both) can forge a
history; checkpoints of the head exported to a place the service cannot write
(serving/checkpoints.py, `carerisk audit checkpoint`) make that detectable: `verify` given them
refuses a log that lacks, or differs at, a record a checkpoint saw.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import hashlib
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from features.contract import PERSON_ID_PATTERN
from features.home import Home

GENESIS_HASH = "0" * 64
HEAD_BYTES = 128  # the anchor file: JSON padded with spaces, well inside one 512-byte sector

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    org TEXT NOT NULL,
    key_id TEXT NOT NULL,
    role TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    outcome TEXT NOT NULL,
    person_ids TEXT NOT NULL,
    risk_outcome TEXT,
    model_name TEXT,
    model_version TEXT,
    bands TEXT NOT NULL,
    status INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    client TEXT,
    key_check TEXT,
    count INTEGER,
    snapshot_date TEXT,
    scope TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""
# Columns added after the first release: NULL in older rows, and then left out of the hash.
LATER_COLUMNS = {
    "client": "TEXT", "key_check": "TEXT", "count": "INTEGER", "snapshot_date": "TEXT",
    "scope": "TEXT",
}  # fmt: skip
_JSON_COLUMNS = ("person_ids", "bands")

PersonId = Annotated[str, StringConstraints(pattern=PERSON_ID_PATTERN)]


class AuditUnavailable(Exception):
    """The audit store cannot be written; the service must not return a score (answer 503)."""


class AuditEntry(BaseModel):
    """What the service records about one request. There is no field for values or scores."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    org: str = Field(min_length=1)
    key_id: str = Field(min_length=1)
    role: str = Field(min_length=1)
    endpoint: str = Field(min_length=1)
    outcome: str = Field(pattern=r"^[a-z_]{1,32}$", description="ok, denied, error, ...")
    person_ids: tuple[PersonId, ...] = ()
    risk_outcome: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    bands: tuple[str, ...] = ()
    status: int = Field(ge=100, le=599)
    client: str | None = Field(default=None, max_length=64, description="the caller's address")
    key_check: str | None = Field(default=None, pattern=r"^[a-z_]{1,16}$")
    count: int | None = Field(default=None, ge=2, description="requests a grouped record holds")
    snapshot_date: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="the snapshot a score came from"
    )
    scope: str | None = Field(
        default=None, max_length=2000, description="a GP key's practices, or all_practices"
    )


class AuditRecord(AuditEntry):
    """An entry as stored: sealed into the chain."""

    seq: int = Field(ge=1)
    time: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad_seq: int | None = None
    reason: str = ""
    head_seq: int | None = None
    head_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    """The head of the chain as seen at `time`: record `seq` had hash `hash` (seq 0: empty)."""

    seq: int
    hash: str
    time: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_hash(fields: dict[str, Any]) -> str:
    """sha256(prev_hash + canonical JSON of the record without its hash)."""
    body = {
        k: v for k, v in fields.items() if k != "hash" and not (k in LATER_COLUMNS and v is None)
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((body["prev_hash"] + canonical).encode("utf-8")).hexdigest()


class AuditLog:
    """The append-only audit chain in one SQLite file plus its anchor ``<file>.head``."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.head_path = self.path.with_suffix(".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._conn: sqlite3.Connection | None = None
        self._conn_pid: int | None = None
        self._mutex = threading.Lock()

    @classmethod
    def in_home(cls, home: Path) -> AuditLog:
        return cls(Home(Path(home)).audit_path)

    # -- writing --

    def append(self, entry: AuditEntry, *, now: dt.datetime | None = None) -> AuditRecord:
        """Seal and commit one record; raises AuditUnavailable if it is not durably stored."""
        return self.append_group([(entry, now or dt.datetime.now(dt.UTC))])[0]

    def append_group(self, entries: Sequence[tuple[AuditEntry, dt.datetime]]) -> list[AuditRecord]:
        """Seal and commit records in order, in one transaction: all of them or none."""
        try:
            with self._mutex, self._file_lock(fcntl.LOCK_EX, create=True):
                records = self._commit(entries)
                self._write_head(records[-1].seq, records[-1].hash)
        except (sqlite3.Error, OSError) as exc:
            self._drop_connection()
            raise AuditUnavailable(f"audit store {self.path} cannot be written: {exc}") from exc
        return records

    def _commit(self, entries: Sequence[tuple[AuditEntry, dt.datetime]]) -> list[AuditRecord]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            records = []
            for entry, when in entries:
                records.append(_insert(conn, entry, when.astimezone(dt.UTC), seq, prev))
                seq, prev = seq + 1, records[-1].hash
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return records

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._conn_pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            _add_later_columns(conn)
            os.chmod(self.path, 0o600)
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None and self._conn_pid == os.getpid():
            with suppress(sqlite3.Error):
                self._conn.close()
        self._conn, self._conn_pid = None, None

    def close(self) -> None:
        with self._mutex:
            self._drop_connection()

    def _write_head(self, seq: int, hash_: str) -> None:
        """Rewrite the anchor in place: one block of HEAD_BYTES, fdatasynced. A write within one
        disk sector is not torn, and it costs a third of a new file, rename and folder fsync."""
        text = json.dumps({"seq": seq, "hash": hash_}).ljust(HEAD_BYTES - 1) + "\n"
        created = not self.head_path.exists()
        fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, text.encode("ascii"), 0)
            os.ftruncate(fd, HEAD_BYTES)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if created:  # the new name must survive a crash too
            dir_fd = os.open(self.head_path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @contextmanager
    def _file_lock(self, mode: int, *, create: bool) -> Iterator[None]:
        """flock on the lock file; readers that cannot create it go unlocked."""
        if create:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        else:
            try:
                fd = os.open(self.lock_path, os.O_RDONLY)
            except FileNotFoundError:
                yield
                return
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    # -- reading --

    def verify(self, checkpoints: Sequence[Checkpoint] = ()) -> VerifyResult:
        """Walk the chain from seq 1, compare its end with the anchor, then check that every
        record a checkpoint saw is still there, unchanged (see serving/checkpoints.py)."""
        with self._file_lock(fcntl.LOCK_SH, create=False):
            rows = self._rows("SELECT * FROM audit ORDER BY seq")
            head = self._read_head()
        if isinstance(head, str):
            return VerifyResult(False, len(rows), None, head)
        prev, last_hash = GENESIS_HASH, None
        for expected, row in enumerate(rows, start=1):
            bad = _check_row(row, expected, prev)
            if bad:
                return VerifyResult(False, len(rows), bad[0], bad[1])
            prev = last_hash = row["hash"]
        against = _check_checkpoints([row["hash"] for row in rows], checkpoints)
        if against is not None:
            return against
        result = _check_head(len(rows), last_hash, head)
        if result.ok and checkpoints:
            latest = max(checkpoints, key=lambda c: c.seq)
            covered = f"; checkpoints cover seq 1-{latest.seq} (latest {latest.time})"
            return replace(result, reason=result.reason + covered)
        return result

    def count(self, endpoint: str | None = None) -> int:
        if endpoint is None:
            rows = self._rows("SELECT COUNT(*) AS n FROM audit")
        else:
            rows = self._rows("SELECT COUNT(*) AS n FROM audit WHERE endpoint = ?", (endpoint,))
        return int(rows[0]["n"]) if rows else 0

    def tail(self, n: int = 20) -> list[AuditRecord]:
        """The last n records, oldest first."""
        query = "SELECT * FROM audit ORDER BY seq DESC LIMIT ?"
        rows = self._rows(query, (max(int(n), 0),))
        return [_to_record(row) for row in reversed(rows)]

    def since(self, seq: int) -> list[AuditRecord]:
        """The records after sequence number `seq`, oldest first (one read, so records committed
        meanwhile cannot push any out, as they can between count() and tail())."""
        return [
            _to_record(r)
            for r in self._rows("SELECT * FROM audit WHERE seq > ? ORDER BY seq", (int(seq),))
        ]

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout)
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit store {self.path} cannot be read: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            if not _has_table(conn):
                return []
            return [dict(r) for r in conn.execute(query, params).fetchall()]
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit store {self.path} cannot be read: {exc}") from exc
        finally:
            conn.close()

    def _read_head(self) -> tuple[int, str] | None | str:
        """(seq, hash) from the anchor, None when absent, or a reason string when unreadable."""
        try:
            data = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(data["seq"]), str(data["hash"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"anchor {self.head_path} is unreadable: {exc}"


class AuditWriter:
    """Commits the appends of every thread and coroutine of a process in groups, on one thread.

    `append` (threads) and `append_async` (the event loop) return once the record is durable.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, entry: AuditEntry) -> Future[AuditRecord]:
        """Queue one record, timed now; the future holds its sealed record or AuditUnavailable."""
        future: Future[AuditRecord] = Future()
        with self._lock:  # the time and the queue order agree
            self._start()
            self._queue.put(_Pending(entry, dt.datetime.now(dt.UTC), future))
        return future

    def append(self, entry: AuditEntry) -> AuditRecord:
        return self.submit(entry).result()

    async def append_async(self, entry: AuditEntry) -> AuditRecord:
        return await asyncio.wrap_future(self.submit(entry))

    def close(self) -> None:
        """Commit what is queued, then stop the thread (a later append starts a new one)."""
        with self._lock:
            mine = self._thread is not None and self._pid == os.getpid()
            thread, pending = self._thread, self._queue
            self._thread = None
        if mine and thread is not None:
            pending.put(None)
            thread.join()

    def _start(self) -> None:
        """A thread with a queue of its own, in this process, alive."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._run, args=(self._queue,), name="audit-writer", daemon=True
            )
            self._pid = os.getpid()
            self._thread.start()

    def _run(self, pending: queue.SimpleQueue[_Pending | None]) -> None:
        while True:
            first = pending.get()
            group, stop = ([first] if first else []), first is None
            while not stop:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                stop = item is None
                group += [item] if item else []
            if group:
                self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Pending]) -> None:
        # a caller that has given up (its request was cancelled) is still recorded
        waiting = [p.future.set_running_or_notify_cancel() for p in group]
        try:
            outcomes: list[AuditRecord | BaseException] = list(
                self.log.append_group([(p.entry, p.when) for p in group])
            )
        except Exception as exc:  # every caller of the group gets the failure
            reason = str(exc) if isinstance(exc, AuditUnavailable) else type(exc).__name__
            outcomes = [AuditUnavailable(reason) for _ in group]
        for pending, outcome, wants in zip(group, outcomes, waiting, strict=True):
            if not wants:
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)


@dataclass(frozen=True)
class _Pending:
    entry: AuditEntry
    when: dt.datetime
    future: Future[AuditRecord]


def _insert(
    conn: sqlite3.Connection, entry: AuditEntry, when: dt.datetime, seq: int, prev: str
) -> AuditRecord:
    fields = entry.model_dump(mode="json")
    fields.update(seq=seq, time=when.isoformat(timespec="microseconds"), prev_hash=prev)
    fields["hash"] = record_hash(fields)
    row = {k: _to_column(k, v) for k, v in fields.items()}
    names = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    conn.execute(f"INSERT INTO audit ({names}) VALUES ({marks})", row)
    return AuditRecord.model_validate(fields)


def _add_later_columns(conn: sqlite3.Connection) -> None:
    """Bring a log written before the later columns up to date (rows keep NULL in them)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(audit)")}
    for name, kind in LATER_COLUMNS.items():
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE audit ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as error:  # another process added it meanwhile
                if "duplicate column" not in str(error):
                    raise


def _has_table(conn: sqlite3.Connection) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'"
    return conn.execute(query).fetchone() is not None


def _to_column(name: str, value: Any) -> Any:
    return json.dumps(list(value)) if name in _JSON_COLUMNS else value


def _from_row(row: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = dict.fromkeys(LATER_COLUMNS) | dict(row)
    for name in _JSON_COLUMNS:
        fields[name] = json.loads(fields[name])
    return fields


def _to_record(row: dict[str, Any]) -> AuditRecord:
    return AuditRecord.model_validate(_from_row(row))


def _check_row(row: dict[str, Any], expected: int, prev: str) -> tuple[int, str] | None:
    """(seq, reason) for the first problem with this row, or None when it is sound."""
    seq = row["seq"]
    if seq != expected:
        return expected, f"record seq {expected} is missing (the next stored seq is {seq})"
    if row["prev_hash"] != prev:
        return seq, f"record seq {seq}: prev_hash does not match the hash of seq {seq - 1}"
    try:
        fields = _from_row(row)
    except (ValueError, TypeError) as exc:
        return seq, f"record seq {seq}: stored JSON is malformed: {exc}"
    if record_hash(fields) != row["hash"]:
        return seq, f"record seq {seq}: hash does not match its contents (record was altered)"
    return None


def _check_checkpoints(hashes: list[str], checkpoints: Sequence[Checkpoint]) -> VerifyResult | None:
    """A failed result when the log lacks, or differs at, a record a checkpoint saw."""
    n = len(hashes)
    for point in sorted(checkpoints, key=lambda c: c.seq):
        if point.seq > n:
            held = "the log is empty" if n == 0 else f"the log ends at seq {n}"
            reason = (
                f"{held} but the checkpoint of {point.time} saw {point.seq} records: "
                "records were deleted"
            )
            return VerifyResult(False, n, n + 1, reason, point.seq, point.hash)
        if point.seq and hashes[point.seq - 1] != point.hash:
            reason = (
                f"record seq {point.seq} differs from the checkpoint of {point.time}: "
                "the chain was rewritten"
            )
            return VerifyResult(False, n, point.seq, reason, point.seq, point.hash)
    return None


def _check_head(n: int, last_hash: str | None, head: tuple[int, str] | None) -> VerifyResult:
    if head is None:
        if n == 0:
            return VerifyResult(True, 0, reason="empty log")
        return VerifyResult(False, n, None, "anchor file is missing but the log has records")
    head_seq, head_hash = head
    if head_seq > n:
        reason = f"log ends at seq {n} but the anchor records seq {head_seq}: tail was truncated"
        return VerifyResult(False, n, n + 1, reason, head_seq, head_hash)
    if head_seq < n:
        reason = f"anchor records seq {head_seq} but the log has {n} records after it"
        return VerifyResult(False, n, head_seq + 1, reason, head_seq, head_hash)
    if head_hash != last_hash:
        reason = f"record seq {n}: hash differs from the anchor (chain was rewritten)"
        return VerifyResult(False, n, n, reason, head_seq, head_hash)
    return VerifyResult(True, n, None, "chain intact", head_seq, head_hash)
