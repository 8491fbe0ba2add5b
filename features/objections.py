"""The objections list: people who objected to their data being used for risk stratification.

A CSV with a ``person_id`` column (``<home>/objections.csv``, UTF-8, a byte-order mark
allowed). A missing file means nobody objected; a malformed row, or bytes that are not CSV
text, is an error naming the file, column and line (never the row's content: it may be an NHS
number or a name), never skipped. Training sets leave these people out; the service never
scores them (serving/objection_list.py).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from features.contract import PERSON_ID_PATTERN

COLUMN = "person_id"
_PERSON_ID = re.compile(PERSON_ID_PATTERN)


class ObjectionListError(ValueError):
    """The objections file cannot be read or has a bad row."""


def read_objections(path: Path) -> frozenset[str]:
    """Person ids from the CSV; missing file -> empty set."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return frozenset()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ObjectionListError(f"{path}: line {line} is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _read_ids(path, reader)
    except csv.Error:
        raise ObjectionListError(f"{path}: line {reader.line_num} is not CSV text") from None


def _read_ids(path: Path, reader: csv.DictReader[str]) -> frozenset[str]:
    if reader.fieldnames is None or COLUMN not in reader.fieldnames:
        raise ObjectionListError(f"{path}: header must contain a {COLUMN!r} column")
    ids = set()
    for row in reader:
        ids.add(_check_id(path, reader.line_num, row.get(COLUMN)))
    return frozenset(ids)


def _check_id(path: Path, line: int, value: str | None) -> str:
    value = (value or "").strip()
    if not _PERSON_ID.match(value):
        raise ObjectionListError(
            f"{path}: column {COLUMN!r}, line {line}: the value is not a pseudonymised person id "
            "(it is not repeated here)"
        )
    return value
