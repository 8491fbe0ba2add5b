"""People who objected to their data being used (national data opt-out and local objections).

The list is a CSV with a ``person_id`` column (``<home>/objections.csv``). A missing file means
nobody objected; a malformed row is an error naming the file, column and row, never skipped.
"""

from __future__ import annotations

import csv
import re
import threading
from pathlib import Path

import pandas as pd

from features.contract import PERSON_ID_PATTERN

OBJECTIONS_FILE = "objections.csv"
COLUMN = "person_id"
_PERSON_ID = re.compile(PERSON_ID_PATTERN)


class ObjectionListError(ValueError):
    """The objections file cannot be read or has a bad row."""


class ObjectionList:
    """The set of person ids who objected; `reload` swaps it in whole."""

    def __init__(self, path: Path, ids: frozenset[str] = frozenset()) -> None:
        self.path = Path(path)
        self._ids = ids
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> ObjectionList:
        path = Path(path)
        return cls(path, read_objections(path))

    def reload(self) -> int:
        """Re-read the file; returns how many ids the list now holds."""
        ids = read_objections(self.path)
        with self._lock:
            self._ids = ids
        return len(ids)

    def __contains__(self, person_id: object) -> bool:
        return person_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def filter_frame(self, df: pd.DataFrame, column: str = COLUMN) -> tuple[pd.DataFrame, int]:
        """The frame without objectors' rows, and how many rows were removed."""
        if column not in df.columns:
            raise ObjectionListError(f"frame has no column {column!r} to match objections on")
        keep = ~df[column].isin(self._ids)
        removed = int((~keep).sum())
        return df.loc[keep], removed


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
