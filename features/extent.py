"""What a store covers: its latest event date, the first day of its data and the extract last
loaded. The one module that reads these from a store (feature snapshots, training dates and the
command line all ask it).

Deaths do not count towards the latest event date (nor towards the data's start). A death is
a registration, not activity: it says nothing about how far the services' records reach, and
a death table cut later than the activity tables would otherwise move index dates past the
activity data (features with a gap before D, labels whose follow-up the records do not cover).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from features.contract import TABLES

# tables whose dates are not activity: deaths (see above) and GP codes, which carry
# diagnoses made years before the extract begins (left out of the data's start only)
NOT_ACTIVITY = "death"
NOT_START = ("death", "gp_event")


@dataclass(frozen=True)
class LastExtract:
    """The extract most recently loaded into a store."""

    folder: Path
    extract_date: date | None


def last_extract(store_path: Path) -> LastExtract | None:
    """The folder and extract date of the last load (by finish time); None without a load log."""
    with _read(store_path) as con:
        try:
            row = con.execute(
                "SELECT extract_dir, extract_date FROM load_log ORDER BY finished_at DESC LIMIT 1"
            ).fetchone()
        except duckdb.Error:  # a store without a load log (e.g. built in a test)
            return None
    if not row or not row[0]:
        return None
    return LastExtract(Path(row[0]), row[1])


def latest_event_date(store_path: Path) -> date | None:
    """The latest activity date in the store (deaths left out)."""
    return _dates(store_path, "max", (NOT_ACTIVITY,))


def data_start(store_path: Path) -> date | None:
    """The first day the extract covers: the `start` in the manifest of the extract last loaded
    into the store, else the earliest activity date (deaths and GP codes left out)."""
    start = _manifest_start(last_extract(store_path))
    return start if start is not None else _dates(store_path, "min", NOT_START)


def snapshot_date(store_path: Path) -> date | None:
    """The default index date of a snapshot: the day after the latest activity, else the day
    after the last extract's date; None when the store has neither."""
    latest = latest_event_date(store_path)
    if latest is None:
        extract = last_extract(store_path)
        latest = extract.extract_date if extract else None
    return latest + timedelta(days=1) if latest is not None else None


def _dates(store_path: Path, how: str, skip: tuple[str, ...]) -> date | None:
    parts = [
        f'SELECT {how}("{spec.event_date}") AS d FROM "{spec.name}"'
        for spec in TABLES
        if spec.event_date and spec.name not in skip
    ]
    with _read(store_path) as con:
        row = con.execute(f"SELECT {how}(d) FROM ({' UNION ALL '.join(parts)})").fetchone()
    return row[0] if row and row[0] is not None else None


def _manifest_start(extract: LastExtract | None) -> date | None:
    """`start` from the manifest.json of the extract, when it says."""
    if extract is None:
        return None
    manifest = extract.folder / "manifest.json"
    if not manifest.is_file():
        return None
    start = json.loads(manifest.read_text(encoding="utf-8")).get("start")
    return date.fromisoformat(start) if start else None


def _read(store_path: Path) -> Any:
    if not Path(store_path).exists():
        raise FileNotFoundError(f"no store at {store_path}")
    return duckdb.connect(str(store_path), read_only=True)
