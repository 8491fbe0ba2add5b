"""People who objected to their data being used (national data opt-out and local objections).

The list is a CSV with a ``person_id`` column (``<home>/objections.csv``). A missing file means
nobody objected; a malformed row is an error naming the file, column and row, never skipped.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd

from features.objections import COLUMN, ObjectionListError, read_objections

__all__ = ["COLUMN", "ObjectionList", "ObjectionListError", "read_objections"]


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

    @property
    def ids(self) -> frozenset[str]:
        return self._ids

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
