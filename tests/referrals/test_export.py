"""Visits exported as data contract rows, loaded back by the real loader."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from features.contract import TABLES
from features.home import Home
from referrals.export import ExportError, export_visits, visit_rows
from referrals.store import ReferralStore, StatusChange
from tests.referrals.builders import FIRE, NOW, new, visit

# --- the loop in the data ------------------------------------------------------------------


def test_visits_export_as_contract_rows_the_loader_accepts(
    store: ReferralStore, tmp_path: Path
) -> None:
    from features.store import load_extract

    seen = store.create(new("Pabcdef000001"))
    store.move(seen.id, StatusChange(status="accepted"), FIRE)
    store.move(seen.id, visit(), FIRE)
    store.create(new("Pabcdef000002"))  # not visited: not exported
    out = tmp_path / "export"
    done = export_visits(store.find(), out, data_start=dt.date(2022, 4, 1))
    assert done.visits == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{t.name}.csv" for t in TABLES] + ["manifest.json"]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["start"] == "2022-04-01" and manifest["extract_date"] == NOW.date().isoformat()
    rows = (out / "fire_home_visit.csv").read_text().splitlines()
    header = "visit_id,person_id,visit_date,trip_hazards,smoke_alarm_working,smoker,"
    assert rows[0] == header + "mobility_concern,referral_made"
    assert rows[1] == f"{seen.id},Pabcdef000001,{NOW.date()},true,false,false,true,false"

    store_path = Home(tmp_path).store_path
    load_extract(
        people_extract(tmp_path / "people", ["Pabcdef000001", "Pabcdef000002"]), store_path
    )
    report = load_extract(out, store_path)
    assert report.table("fire_home_visit").rows_loaded == 1 and report.clean
    again = load_extract(export_visits(store.find(), out).folder, store_path)
    assert again.table("fire_home_visit").rows_unchanged == 1  # exporting again adds nothing


def people_extract(folder: Path, people: list[str]) -> Path:
    """An extract of just these people (every other table empty)."""
    folder.mkdir()
    for table in TABLES:
        (folder / f"{table.name}.csv").write_text(",".join(c.name for c in table.columns) + "\n")
    rows = [f"{p},1940-03-01,F,white,E01000001,5,Wyre,M81010,EMIS,true,false" for p in people]
    with open(folder / "person.csv", "a") as handle:
        handle.write("\n".join(rows) + "\n")
    (folder / "manifest.json").write_text('{"extract_date": "2025-03-31"}')
    return folder


def test_export_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="notes.txt"):
        export_visits([], tmp_path)


def test_visit_rows_skip_referrals_without_a_visit(store: ReferralStore) -> None:
    made = store.create(new())
    store.move(made.id, StatusChange(status="declined"), FIRE)
    assert visit_rows(store.find()) == []
