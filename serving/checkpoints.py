"""Checkpoints of the audit chain's head, kept where the service cannot write.

The chain and its anchor (serving/audit.py) live in the home, so whoever can write the home can
delete the log, cut its tail and rewrite the anchor, or edit a record and recompute every hash
after it. A checkpoint is the head as a verifier saw it (seq, hash, time), appended as one JSON
line to ``audit-checkpoints.jsonl`` in a folder **outside the home that the service's account
cannot write**: a root-owned folder the service may only read, or a read-only mount. An
administrator's job writes them (`carerisk audit checkpoint --checkpoints DIR`, e.g. from root's
crontab every few minutes); it verifies the chain against the earlier checkpoints first and
refuses to checkpoint a chain that contradicts them. Each line is also printed, so it can be
kept anywhere else too (a ticket, a log server): `verify` reads a folder or a single file.

`AuditLog.verify(checkpoints)` then refuses a log that is empty, shorter than, or different at
a record a checkpoint saw: deletion, truncation (with a rewritten anchor) and re-chaining are
all caught for every record up to the latest checkpoint. Records newer than the latest
checkpoint are protected by the anchor only, so the checkpoint interval is the window.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from serving.audit import GENESIS_HASH, AuditLog, Checkpoint

CHECKPOINT_FILE = "audit-checkpoints.jsonl"


class CheckpointError(Exception):
    """Checkpoints cannot be read or written, or the chain contradicts them."""


def checkpoint_file(location: Path) -> Path:
    """The checkpoint file of `location`: the file itself, or the folder's standard file."""
    location = Path(location)
    return location / CHECKPOINT_FILE if location.is_dir() else location


def read_checkpoints(location: Path) -> list[Checkpoint]:
    """Every checkpoint at `location` (a folder or a file), in the order written. A folder
    without a checkpoint file holds none; a location that does not exist is an error."""
    location = Path(location)
    if not location.exists():
        raise CheckpointError(f"audit checkpoints: {location} does not exist")
    path = checkpoint_file(location)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"audit checkpoints: cannot read {path}: {exc}") from exc
    return [_parse(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]


def _parse(path: Path, number: int, line: str) -> Checkpoint:
    try:
        data = json.loads(line)
        point = Checkpoint(seq=int(data["seq"]), hash=str(data["hash"]), time=str(data["time"]))
    except (ValueError, KeyError, TypeError) as exc:
        message = f"audit checkpoints: {path} line {number} is malformed: {exc}"
        raise CheckpointError(message) from None
    if point.seq < 0 or len(point.hash) != 64:
        raise CheckpointError(f"audit checkpoints: {path} line {number} is malformed")
    return point


def write_checkpoint(log: AuditLog, location: Path, home: Path) -> tuple[Checkpoint, bool]:
    """Verify the chain against the checkpoints at `location`, then append the head there.
    Returns the head and whether a line was written (not when it equals the latest)."""
    location = Path(location).resolve()
    if location.is_relative_to(Path(home).resolve()):
        raise CheckpointError(
            f"audit checkpoints: {location} is inside the home; keep them where the service "
            "cannot write"
        )
    earlier = read_checkpoints(location) if location.exists() else []
    result = log.verify(earlier)
    if not result.ok:
        raise CheckpointError(
            f"the audit chain fails verification ({result.reason}); no checkpoint written"
        )
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    head = Checkpoint(result.head_seq or 0, result.head_hash or GENESIS_HASH, now)
    latest = max(earlier, key=lambda c: c.seq, default=None)
    if latest is not None and (latest.seq, latest.hash) == (head.seq, head.hash):
        return latest, False
    _append(checkpoint_file(location) if location.exists() else location, head)
    return head, True


def _append(path: Path, point: Checkpoint) -> None:
    """One line, appended and fsynced. The file holds hashes only, no person data, so the
    service's account may read it (0644); it must not be able to write it."""
    line = json.dumps(point.to_dict(), sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CheckpointError(f"audit checkpoints: cannot write {path}: {exc}") from exc
