"""The loop closed in the data: visits exported as contract rows.

`export_visits` writes an extract folder that `carerisk load` accepts: one ``fire_home_visit``
row per visited referral (``visit_id`` is the referral id, so exporting again adds nothing: the
loader finds the same rows unchanged), every other contract table as a header-only CSV, and a
``manifest.json`` with the extract date, ``"kind": "increment"`` (it adds visits; it is not the
whole of any source) and the store's data start (the loader reads the start
from the extract loaded last; without it, the data's start would move to the earliest event in
the store). The next `carerisk features` then sees the visits: ``fire_visited`` and the findings
of the last visit.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.contract import TABLES
from referrals.store import Referral

VISIT_TABLE = "fire_home_visit"
MANIFEST = "manifest.json"


class ExportError(Exception):
    """The export folder cannot be written (named)."""


@dataclass(frozen=True)
class Export:
    folder: Path
    visits: int
    extract_date: dt.date

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "visits": self.visits,
                "extract_date": self.extract_date.isoformat()}  # fmt: skip


def visit_rows(referrals: Sequence[Referral]) -> list[dict[str, Any]]:
    """One fire_home_visit row per visited referral, in the contract's columns."""
    rows = []
    for ref in referrals:
        if ref.visit_date is None or ref.findings is None:
            continue
        found = {k: "true" if v else "false" for k, v in ref.findings.model_dump().items()}
        when = ref.visit_date.isoformat()
        rows.append({"visit_id": ref.id, "person_id": ref.person_id, "visit_date": when, **found})
    return sorted(rows, key=lambda r: (r["visit_date"], r["visit_id"]))


def export_visits(
    referrals: Sequence[Referral],
    folder: Path,
    *,
    data_start: dt.date | None = None,
    today: dt.date | None = None,
) -> Export:
    """Write the visits as an extract folder (see the module's docstring)."""
    folder = Path(folder)
    ours = {f"{t.name}.csv" for t in TABLES} | {MANIFEST}
    if folder.exists():
        others = sorted(p.name for p in folder.iterdir() if p.name not in ours)
        if others:
            raise ExportError(f"{folder} holds other files ({', '.join(others[:5])}); "
                              "export into an empty folder")  # fmt: skip
    rows = visit_rows(referrals)
    latest = max((dt.date.fromisoformat(r["visit_date"]) for r in rows), default=None)
    extract_date = max(d for d in (today or dt.date.today(), latest) if d is not None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for table in TABLES:
            columns = [c.name for c in table.columns]
            with open(folder / f"{table.name}.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
                writer.writeheader()
                if table.name == VISIT_TABLE:
                    writer.writerows(rows)
        manifest: dict[str, Any] = {
            "extract_date": extract_date.isoformat(),
            "generator": "carerisk referrals export",
            "kind": "increment",  # visits only: a full extract would retire every other row
            "rows": {VISIT_TABLE: len(rows)},
        }
        if data_start is not None:
            manifest["start"] = data_start.isoformat()
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write the export to {folder}: {exc}") from exc
    return Export(folder, len(rows), extract_date)


# --- the report -----------------------------------------------------------------------------
