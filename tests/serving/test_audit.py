from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from features.home import Home
from serving.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditLog,
    AuditUnavailable,
    AuditWriter,
    record_hash,
)


def entry(i: int = 0, **changes: object) -> AuditEntry:
    base: dict[str, object] = {
        "org": "GP A",
        "key_id": "aa471923c21a",
        "role": "gp",
        "endpoint": "score",
        "outcome": "ok",
        "person_ids": [f"P{i:07d}"],
        "risk_outcome": "falls",
        "model_name": "carerisk-falls",
        "model_version": "3",
        "bands": ["high"],
        "status": 200,
    }
    base.update(changes)
    return AuditEntry.model_validate(base)


def filled(tmp_path: Path, n: int = 10) -> AuditLog:
    log = AuditLog.in_home(tmp_path)
    for i in range(n):
        log.append(entry(i))
    return log


def tamper(log: AuditLog, sql: str, *params: object) -> None:
    """Someone with file access edits the database directly, past the triggers."""
    conn = sqlite3.connect(log.path)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_append_and_verify(tmp_path):
    log = filled(tmp_path, 5)
    result = log.verify()
    assert result.ok and result.records == 5 and result.first_bad_seq is None
    records = log.tail(10)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:], strict=False))
    assert records[2].hash == record_hash(records[2].model_dump(mode="json"))
    assert json.loads(log.head_path.read_text()) == {"seq": 5, "hash": records[-1].hash}
    assert log.count() == 5 and log.count("score") == 5 and log.count("register") == 0
    assert [r.seq for r in log.tail(2)] == [4, 5]
    assert [r.seq for r in log.since(3)] == [4, 5] and log.since(5) == []
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


def test_record_time_is_utc_iso(tmp_path):
    log = AuditLog.in_home(tmp_path)
    when = dt.datetime(2025, 4, 2, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    record = log.append(entry(), now=when)
    assert record.time == "2025-04-02T09:00:00.000000+00:00"


def test_entries_never_carry_scores_or_raw_ids():
    with pytest.raises(ValidationError, match="probability"):
        entry(probability=0.3)
    with pytest.raises(ValidationError, match="features"):
        entry(features={"age": 81})
    with pytest.raises(ValidationError, match="person_ids"):
        entry(person_ids=["943 476 5919"])  # an NHS number, not a pseudonym


def test_sql_updates_and_deletes_are_refused(tmp_path):
    log = filled(tmp_path, 2)
    conn = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET org = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 2")
    conn.close()
    assert log.verify().ok


def test_edited_record_fails_at_its_seq(tmp_path):
    log = filled(tmp_path)
    tamper(log, "UPDATE audit SET bands = ? WHERE seq = 4", json.dumps(["low"]))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 4
    assert "altered" in result.reason


def test_deleted_record_fails(tmp_path):
    log = filled(tmp_path)
    tamper(log, "DELETE FROM audit WHERE seq = 6")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 6
    assert "missing" in result.reason


def test_deleted_and_renumbered_record_breaks_the_chain(tmp_path):
    log = filled(tmp_path)
    tamper(log, "DELETE FROM audit WHERE seq = 6")
    tamper(log, "UPDATE audit SET seq = seq - 1 WHERE seq > 6")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 6


def test_reordered_records_fail(tmp_path):
    log = filled(tmp_path)
    tamper(log, "UPDATE audit SET seq = 100 WHERE seq = 3")
    tamper(log, "UPDATE audit SET seq = 3 WHERE seq = 4")
    tamper(log, "UPDATE audit SET seq = 4 WHERE seq = 100")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3


def test_truncated_tail_is_caught_by_the_anchor(tmp_path):
    log = filled(tmp_path)
    tamper(log, "DELETE FROM audit WHERE seq > 7")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 8
    assert "truncated" in result.reason


def test_rewritten_chain_is_caught_by_the_anchor(tmp_path):
    log = filled(tmp_path, 3)
    conn = sqlite3.connect(log.path)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]
    conn.close()
    # edit seq 2 and recompute every hash after it, as a careful forger would
    prev = rows[0]["hash"]
    for row in rows[1:]:
        fields = {**row, "person_ids": json.loads(row["person_ids"]), "bands": []}
        fields["prev_hash"] = prev
        prev = record_hash(fields)
        tamper(
            log,
            "UPDATE audit SET bands = '[]', prev_hash = ?, hash = ? WHERE seq = ?",
            fields["prev_hash"],
            prev,
            row["seq"],
        )
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3
    assert "anchor" in result.reason


def test_missing_anchor_fails(tmp_path):
    log = filled(tmp_path, 2)
    log.head_path.unlink()
    result = log.verify()
    assert not result.ok and "anchor file is missing" in result.reason


def test_empty_log_verifies(tmp_path):
    result = AuditLog.in_home(tmp_path).verify()
    assert result.ok and result.records == 0
    assert not Home(tmp_path).audit_path.exists()


def _append_many(path: str, worker: int, n: int) -> None:
    log = AuditLog(Path(path))
    for i in range(n):
        log.append(entry(i, key_id=f"worker{worker}"))


@pytest.mark.slow
def test_concurrent_appends_from_processes(tmp_path):
    path = Home(tmp_path).audit_path
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    log = AuditLog(path)
    result = log.verify()
    assert result.ok, result.reason
    assert result.records == 800 and log.count() == 800
    conn = sqlite3.connect(path)
    per_worker = dict(conn.execute("SELECT key_id, COUNT(*) FROM audit GROUP BY key_id"))
    conn.close()
    assert per_worker == {f"worker{w}": 200 for w in range(4)}


def test_store_under_a_file_is_unavailable(tmp_path):
    blocker = tmp_path / "home"
    blocker.write_text("not a folder")
    with pytest.raises(AuditUnavailable, match="cannot be written"):
        AuditLog.in_home(blocker).append(entry())


def test_folder_in_place_of_the_database_is_unavailable(tmp_path):
    Home(tmp_path).audit_path.mkdir()
    with pytest.raises(AuditUnavailable, match="unable to open database"):
        AuditLog.in_home(tmp_path).append(entry())


def test_store_locked_by_another_writer_is_unavailable(tmp_path):
    log = filled(tmp_path, 1)
    other = sqlite3.connect(log.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(AuditUnavailable, match="locked"):
            AuditLog(log.path, busy_timeout=0.2).append(entry())
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert log.verify().ok and log.count() == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_is_unavailable(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    try:
        with pytest.raises(AuditUnavailable):
            AuditLog.in_home(home).append(entry())
    finally:
        home.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_file_is_unavailable(tmp_path):
    log = filled(tmp_path, 1)
    log.close()
    log.path.chmod(0o400)
    try:
        with pytest.raises(AuditUnavailable):
            AuditLog(log.path).append(entry())
    finally:
        log.path.chmod(0o600)


def test_concurrent_appends_from_threads_share_one_log(tmp_path):
    log = AuditLog.in_home(tmp_path)

    def work(worker: int) -> None:
        for i in range(25):
            log.append(entry(i, key_id=f"thread{worker}"))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = log.verify()
    assert result.ok and result.records == 100


class CountingLog(AuditLog):
    """Counts the groups committed; can be told to fail the next group of more than one."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.groups: list[int] = []
        self.fail_next_group = False

    def append_group(self, entries):  # type: ignore[no-untyped-def]
        if self.fail_next_group and len(entries) > 1:
            self.fail_next_group = False
            raise AuditUnavailable("audit store cannot be written: disk I/O error")
        records = super().append_group(entries)
        self.groups.append(len(records))
        return records


def submit_while_locked(writer: AuditWriter, n: int) -> list[object]:
    """Submit n records while another process holds the audit lock; each one's outcome."""
    lock_fd = os.open(writer.log.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    futures = [writer.submit(entry(i, key_id=f"caller{i}")) for i in range(n)]
    time.sleep(0.2)  # the writer takes what has queued, then waits on the lock
    fcntl.flock(lock_fd, fcntl.LOCK_UN)
    os.close(lock_fd)
    return [f.exception(timeout=10) or f.result() for f in futures]


def test_appends_that_queue_up_are_committed_as_one_group(tmp_path):
    log = CountingLog(Home(tmp_path).audit_path)
    writer = AuditWriter(log)
    writer.append(entry(0))
    outcomes = submit_while_locked(writer, 12)
    assert not [o for o in outcomes if isinstance(o, Exception)]
    assert log.groups[0] == 1 and sum(log.groups[1:]) == 12 and len(log.groups) <= 3
    assert [o.seq for o in outcomes] == list(range(2, 14))  # type: ignore[union-attr]
    assert [o.key_id for o in outcomes] == [f"caller{i}" for i in range(12)]  # type: ignore[union-attr]
    result = log.verify()
    assert result.ok and result.records == 13 and result.head_seq == 13
    writer.close()


def test_a_failed_group_fails_every_caller_in_it_and_writes_none_of_it(tmp_path):
    log = CountingLog(Home(tmp_path).audit_path)
    writer = AuditWriter(log)
    writer.append(entry(0))
    log.fail_next_group = True
    outcomes = submit_while_locked(writer, 8)
    failed = [o for o in outcomes if isinstance(o, AuditUnavailable)]
    assert failed and all("disk I/O error" in str(f) for f in failed)
    assert log.count() == 1 + len(outcomes) - len(failed)
    assert writer.append(entry(99)).seq == log.count()  # and the log goes on
    assert log.verify().ok
    writer.close()


def test_coroutines_and_threads_append_through_one_writer(tmp_path):
    writer = AuditWriter(AuditLog.in_home(tmp_path))

    async def many() -> list[int]:
        records = await asyncio.gather(*(writer.append_async(entry(i)) for i in range(30)))
        return [r.seq for r in records]

    threads = [threading.Thread(target=writer.append, args=(entry(i),)) for i in range(10)]
    for t in threads:
        t.start()
    seqs = asyncio.run(many())
    for t in threads:
        t.join()
    assert len(set(seqs)) == 30
    writer.close()
    result = writer.log.verify()
    assert result.ok and result.records == 40


def test_close_commits_what_is_queued(tmp_path):
    log = AuditLog.in_home(tmp_path)
    writer = AuditWriter(log)
    futures = [writer.submit(entry(i)) for i in range(5)]
    writer.close()
    assert all(f.done() for f in futures) and log.count() == 5
    assert writer.append(entry(5)).seq == 6  # a later append starts a new writer
    writer.close()
    assert log.verify().ok


def test_the_anchor_is_rewritten_whole_in_place(tmp_path):
    log = filled(tmp_path, 3)
    inode = log.head_path.stat().st_ino
    old_style = json.dumps({"seq": 3, "hash": log.tail(1)[0].hash}) + "\n" + "x" * 300
    log.head_path.write_text(old_style)  # longer, as no anchor is: all of it must go
    log.append(entry(3))
    assert log.head_path.stat().st_ino == inode and log.head_path.stat().st_size == 128
    assert json.loads(log.head_path.read_text()) == {"seq": 4, "hash": log.tail(1)[0].hash}
    assert log.verify().ok


OLD_SCHEMA = """
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, org TEXT NOT NULL, key_id TEXT NOT NULL,
    role TEXT NOT NULL, endpoint TEXT NOT NULL, outcome TEXT NOT NULL, person_ids TEXT NOT NULL,
    risk_outcome TEXT, model_name TEXT, model_version TEXT, bands TEXT NOT NULL,
    status INTEGER NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
"""


def test_a_log_written_before_the_client_columns_still_verifies_and_grows(tmp_path):
    """Records from before `client`, `key_check`, `count` and `snapshot_date` existed hash
    without them."""
    path = Home(tmp_path).audit_path
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    prev = GENESIS_HASH
    for seq in (1, 2):
        later = {"client", "key_check", "count", "snapshot_date", "scope"}
        fields = entry(seq).model_dump(mode="json", exclude=later)
        fields.update(seq=seq, time="2026-01-01T00:00:00.000000+00:00", prev_hash=prev)
        fields["hash"] = prev = record_hash(fields)
        row = {k: json.dumps(v) if k in ("person_ids", "bands") else v for k, v in fields.items()}
        conn.execute(f"INSERT INTO audit ({', '.join(row)}) VALUES "
                     f"({', '.join(':' + k for k in row)})", row)  # fmt: skip
    conn.commit()
    conn.close()
    Home(tmp_path).audit_path.with_suffix(".head").write_text(
        json.dumps({"seq": 2, "hash": prev}).ljust(127) + "\n"
    )
    log = AuditLog(path)
    assert log.verify().ok
    log.append(entry(3, client="10.0.0.1", key_check="ok"))
    assert log.verify().ok
    assert [(r.client, r.key_check) for r in log.tail(3)] == [(None, None)] * 2 + [
        ("10.0.0.1", "ok")
    ]
    log.append(entry(4, snapshot_date="2025-04-01"))
    assert log.verify().ok and log.tail(1)[0].snapshot_date == "2025-04-01"
    log.append(entry(5, scope="practices:A81001"))
    assert log.verify().ok and log.tail(1)[0].scope == "practices:A81001"
    tamper(log, "UPDATE audit SET snapshot_date = '2025-05-01' WHERE seq = 4")
    assert log.verify().first_bad_seq == 4


def test_the_client_key_check_and_count_are_sealed_into_the_chain(tmp_path):
    log = AuditLog.in_home(tmp_path)
    log.append(entry(0, client="10.0.0.1", key_check="ok"))
    log.append(entry(1, person_ids=[], client="10.0.0.2", key_check="missing", count=40,
                     status=401, org="unknown", role="none", key_id="none"))  # fmt: skip
    assert log.verify().ok and log.tail(1)[0].count == 40
    tamper(log, "UPDATE audit SET count = 2 WHERE seq = 2")
    assert log.verify().first_bad_seq == 2
    tamper(log, "UPDATE audit SET count = 40 WHERE seq = 2")
    tamper(log, "UPDATE audit SET client = NULL WHERE seq = 1")
    assert log.verify().first_bad_seq == 1
    with pytest.raises(ValidationError, match="count"):
        entry(2, count=1)  # one request is a record of its own, not a group
