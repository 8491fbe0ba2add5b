"""The objections list: people who objected to their data being used for risk stratification.

A CSV with a ``person_id`` column (``<home>/objections.csv``). A missing file means nobody
objected; a malformed row is an error naming the file, column and row, never skipped. Training
sets leave these people out; the service never scores them (serving/objections.py).
"""

from __future__ import annotations

import csv
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
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        return frozenset()
    with handle:
        reader = csv.DictReader(handle)
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
            f"{path}: column {COLUMN!r}, line {line}: {value!r} is not a pseudonymised person id"
        )
    return value
