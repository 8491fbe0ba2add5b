"""Checkpoints of the audit head, kept outside the home, catch what the chain
and its anchor cannot: the log deleted, its tail cut with the anchor rewritten, a record edited
and every hash after it recomputed. Each attack is made on real files, then `carerisk audit
verify` is run as an administrator would."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from features.home import Home
from serving.audit import AuditEntry, AuditLog, record_hash
from serving.checkpoints import CHECKPOINT_FILE, CheckpointError, read_checkpoints, write_checkpoint
from tests.live import carerisk
from tests.serving.test_audit import tamper


def entry(i: int) -> AuditEntry:
    return AuditEntry(
        org="GP A", key_id="aa471923c21a", role="gp", endpoint="score", outcome="ok",
        person_ids=(f"P{i:07d}",), status=200, client="127.0.0.1", key_check="ok",
    )  # fmt: skip


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    log = AuditLog.in_home(home)
    for i in range(10):
        log.append(entry(i))
    return home


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoints"  # e.g. root-owned, read-only to the service
    folder.mkdir()
    return folder


def verify(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return carerisk(home, "audit", "verify", *args, timeout=120)


def checkpoint(home: Path, folder: Path) -> dict[str, object]:
    done = carerisk(home, "audit", "checkpoint", "--checkpoints", str(folder), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def rows(log: AuditLog) -> list[dict[str, object]]:
    conn = sqlite3.connect(log.path)
    conn.row_factory = sqlite3.Row
    found = [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]
    conn.close()
    return found


def rewrite_anchor(log: AuditLog) -> None:
    """What a careful forger does after changing the log: make the anchor agree."""
    last = rows(log)[-1] if rows(log) else None
    if last is None:
        log.head_path.unlink(missing_ok=True)
        return
    text = json.dumps({"seq": last["seq"], "hash": last["hash"]})
    log.head_path.write_text(text.ljust(127) + "\n")


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_a_checkpoint_records_the_head(home: Path, outside: Path) -> None:
    point = checkpoint(home, outside)
    log = AuditLog.in_home(home)
    assert (point["seq"], point["hash"], point["written"]) == (10, log.tail(1)[0].hash, True)
    assert checkpoint(home, outside)["written"] is False  # unchanged head: nothing new
    log.append(entry(10))
    assert checkpoint(home, outside)["seq"] == 11
    assert [c.seq for c in read_checkpoints(outside)] == [10, 11]
    done = verify(home, "--checkpoints", str(outside))
    assert done.returncode == 0 and "checkpoints cover seq 1-11" in done.stdout
    assert (outside / CHECKPOINT_FILE).stat().st_mode & 0o777 == 0o644


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_a_deleted_log_is_caught(home: Path, outside: Path) -> None:
    checkpoint(home, outside)
    for path in home.glob("audit.*"):
        path.unlink()
    assert verify(home).returncode == 0  # without checkpoints nothing can tell
    done = verify(home, "--checkpoints", str(outside))
    assert done.returncode == 1
    assert "the log is empty but the checkpoint of" in done.stdout
    assert "saw 10 records: records were deleted" in done.stdout


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_a_cut_tail_with_a_rewritten_anchor_is_caught(home: Path, outside: Path) -> None:
    checkpoint(home, outside)
    log = AuditLog.in_home(home)
    tamper(log, "DELETE FROM audit WHERE seq > 7")
    rewrite_anchor(log)
    assert verify(home).returncode == 0  # the chain and anchor agree with each other
    done = verify(home, "--checkpoints", str(outside))
    assert done.returncode == 1 and "the log ends at seq 7" in done.stdout


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_an_edited_and_rechained_log_is_caught(home: Path, outside: Path) -> None:
    checkpoint(home, outside)
    log = AuditLog.in_home(home)
    found = rows(log)
    prev = found[2]["hash"]
    for row in found[3:]:  # edit seq 4, recompute every hash after it
        fields = {**row, "person_ids": json.loads(str(row["person_ids"])), "bands": []}
        if row["seq"] == 4:
            fields["person_ids"] = ["Pinnocent000"]
        fields["prev_hash"] = prev
        prev = record_hash(fields)
        tamper(log, "UPDATE audit SET person_ids = ?, prev_hash = ?, hash = ? WHERE seq = ?",
              json.dumps(fields["person_ids"]), fields["prev_hash"], prev, row["seq"])  # fmt: skip
    rewrite_anchor(log)
    assert verify(home).returncode == 0
    done = verify(home, "--checkpoints", str(outside))
    assert done.returncode == 1
    assert "record seq 10 differs from the checkpoint" in done.stdout
    assert "the chain was rewritten" in done.stdout


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_a_broken_chain_is_never_checkpointed(home: Path, outside: Path) -> None:
    tamper(AuditLog.in_home(home), "UPDATE audit SET org = 'x' WHERE seq = 3")
    done = carerisk(home, "audit", "checkpoint", "--checkpoints", str(outside))
    assert done.returncode == 1 and "no checkpoint written" in done.stdout + done.stderr
    assert not (outside / CHECKPOINT_FILE).exists()


def test_checkpoints_inside_the_home_are_refused(home: Path) -> None:
    with pytest.raises(CheckpointError, match="inside the home"):
        write_checkpoint(AuditLog.in_home(home), home, home)


def test_an_empty_log_is_checkpointed_as_seq_0(tmp_path: Path, outside: Path) -> None:
    point, written = write_checkpoint(AuditLog.in_home(tmp_path / "h"), outside, tmp_path / "h")
    assert written and point.seq == 0
    assert AuditLog.in_home(tmp_path / "h").verify(read_checkpoints(outside)).ok


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_malformed_or_missing_checkpoints_are_errors(home: Path, outside: Path) -> None:
    (outside / CHECKPOINT_FILE).write_text('{"seq": 3, "hash": "ab"}\n')
    with pytest.raises(CheckpointError, match="line 1 is malformed"):
        read_checkpoints(outside)
    done = verify(home, "--checkpoints", str(outside / "nowhere"))
    assert done.returncode == 1 and "does not exist" in done.stdout + done.stderr


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_the_setting_names_the_checkpoints(home: Path, outside: Path) -> None:
    checkpoint(home, outside)
    for path in home.glob("audit.*"):
        path.unlink()
    done = carerisk(home, "audit", "verify", env={"CARERISK_AUDIT_CHECKPOINTS": str(outside)})
    assert done.returncode == 1 and "records were deleted" in done.stdout
    assert Home(home).audit_path.exists() is False
