"""A later extract of the same county, clean or with a known drift, and
what the loader makes of it. Small counties (2,000 people), written once per module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from carerisk.cli import app
from features import contract
from features.codes import packaged_codes
from features.home import Home
from features.store import load_extract
from synthetic import CountyConfig, generate
from synthetic.later import later_extract

PEOPLE = 2_000


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A county with injected bad rows, so the later extract must leave them out."""
    out = tmp_path_factory.mktemp("earlier")
    generate(CountyConfig(people=PEOPLE, seed=3, mess_rate=0.01), out)
    return out


@pytest.fixture(scope="module")
def month(earlier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("month")
    later_extract(earlier, out, 1)
    return out


def manifest(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return loaded


def read(folder: Path, name: str) -> pa.Table:
    return pq.read_table(folder / f"{name}.parquet")


def key_set(table: pa.Table, name: str) -> set[str]:
    return set(table.column(contract.table(name).key[0]).to_pylist())


def test_the_window_moves_and_every_change_is_counted(earlier: Path, month: Path) -> None:
    m, before = manifest(month), manifest(earlier)
    assert m["kind"] == "full" and m["later_of"] == {"extract_date": "2025-03-31", "months": 1}
    assert (m["start"], m["end"], m["county_start"]) == ("2022-05-01", "2025-04-30", "2022-04-01")
    assert m["index_dates"][0] == "2023-05-01" and m["index_dates"][-1] == "2025-05-01"
    bad = pq.read_table(earlier / "truth" / "mess.parquet")
    for spec in contract.TABLES:
        c = m["changes"][spec.name]
        clean = before["rows"][spec.name] - pc.sum(pc.equal(bad["table"], spec.name)).as_py()
        assert m["rows"][spec.name] == clean - c["fell_off"] - c["deleted_in_error"] + c["added"]
        assert read(month, spec.name).num_rows == m["rows"][spec.name]
    gp = m["changes"]["gp_event"]
    assert gp["fell_off"] > 0 and gp["corrected"] > 0 and gp["deleted_in_error"] > 0
    assert gp["added"] > 0 and m["changes"]["person"]["added"] == 0


def test_the_same_people_with_new_rows_only_in_the_new_month(earlier: Path, month: Path) -> None:
    people = key_set(read(month, "person"), "person")
    assert len(people) == PEOPLE and people <= key_set(read(earlier, "person"), "person")
    for spec in contract.TABLES:
        if spec.event_date is None or spec.name == "death":
            continue
        new, old = read(month, spec.name), read(earlier, spec.name)
        added = new.filter(pc.invert(pc.is_in(new.column(spec.key[0]), old.column(spec.key[0]))))
        assert added.num_rows == manifest(month)["changes"][spec.name]["added"], spec.name
        days = added.column(spec.event_date)
        if added.num_rows:
            assert pc.min(days).as_py().isoformat() >= "2025-04-01", spec.name
            assert pc.max(days).as_py().isoformat() <= "2025-04-30", spec.name
        day = new.column(spec.event_date)
        gone = pc.and_(
            pc.greater_equal(day, pa.scalar(_day("2022-04-01"))),
            pc.less(day, pa.scalar(_day("2022-05-01"))),
        )
        assert pc.sum(gone).as_py() in (0, None), spec.name  # the month that left the window


def test_the_truth_of_shared_dates_is_unchanged(earlier: Path, tmp_path: Path) -> None:
    """A quarter later, the index dates both extracts hold have the same exact risks: the
    latent process replays the earlier months."""
    later_extract(earlier, tmp_path, 3)
    old = pq.read_table(earlier / "truth" / "true_risk.parquet").to_pandas()
    new = pq.read_table(tmp_path / "truth" / "true_risk.parquet").to_pandas()
    shared = sorted(set(old["index_date"]) & set(new["index_date"]))
    assert len(shared) == len(set(old["index_date"])) - 1  # the first date left the window
    keys = ["person_id", "index_date", "outcome"]
    a = old[old["index_date"].isin(shared)].sort_values(keys).reset_index(drop=True)
    b = new[new["index_date"].isin(shared)].sort_values(keys).reset_index(drop=True)
    assert a.equals(b)
    assert new["index_date"].max() > old["index_date"].max()


def test_a_next_month_loads_with_nothing_lost(earlier: Path, month: Path, tmp_path: Path) -> None:
    store = Home(tmp_path).store_path
    first = load_extract(earlier, store)
    second = load_extract(month, store)
    assert first.kind == "full" and second.kind == "full"
    changes = manifest(month)["changes"]
    for t in second.tables:
        c = changes[t.table]
        assert (t.rows_loaded, t.rows_updated, t.rows_quarantined) == (
            c["added"], c["corrected"], 0
        ), t.table  # fmt: skip
        assert t.rows_retired == c["fell_off"] + c["deleted_in_error"], t.table
        assert t.rows_read == t.rows_loaded + t.rows_updated + t.rows_unchanged, t.table
    with duckdb.connect(str(store), read_only=True) as con:
        for spec in contract.TABLES:
            key = spec.key[0]
            stored = {r[0] for r in con.execute(f'SELECT "{key}" FROM "{spec.name}"').fetchall()}
            moved = con.execute(
                f'SELECT "{key}", change, load_id FROM "{spec.name}_history"'
            ).fetchall()
            assert stored == key_set(read(month, spec.name), spec.name), spec.name
            retired = {k for k, change, load in moved if change == "retired" and load == 2}
            assert (
                len(retired)
                == changes[spec.name]["fell_off"] + changes[spec.name]["deleted_in_error"]
            ), spec.name
            assert not retired & stored, spec.name
    again = load_extract(month, store)
    totals = again.totals()
    assert totals["rows_loaded"] == totals["rows_updated"] == totals["rows_retired"] == 0


@pytest.mark.parametrize("drift", ["gp-system", "new-provider", "prevalence"])
def test_a_drift_is_the_size_its_manifest_says(earlier: Path, tmp_path: Path, drift: str) -> None:
    later_extract(earlier, tmp_path, 1, drift)  # type: ignore[arg-type]
    size = manifest(tmp_path)["drift"]
    assert size["kind"] == drift
    person, gp = read(tmp_path, "person"), read(tmp_path, "gp_event")
    falls = pc.is_in(gp.column("snomed_code"), pa.array(sorted(packaged_codes().fall_snomed)))
    if drift == "gp-system":
        moved = person.filter(pc.equal(person.column("practice_code"), size["practice_code"]))
        assert moved.num_rows == size["people_moved"] > 0
        assert set(moved.column("gp_system").to_pylist()) == {size["to_system"]}
        assert size["to_system"] != size["from_system"]
        theirs = pc.and_(falls, pc.is_in(gp.column("person_id"), moved.column("person_id")))
        assert pc.sum(theirs).as_py() == 0 and size["gp_fall_entries_removed"] > 0
    elif drift == "new-provider":
        care = read(tmp_path, "social_care")
        new = care.filter(pc.greater(care.column("start_date"), pa.scalar(_day("2025-03-31"))))
        clean = manifest(tmp_path)["changes"]["social_care"]["added"]
        assert new.num_rows == clean + size["social_care_rows_added"]
        assert size["people_with_new_home_care"] > 0.05 * size["eligible_people"]
    else:
        assert size["gp_fall_entry_share_after"] > size["gp_fall_entry_share_before"] + 0.05
        clean_gp = manifest(tmp_path)["rows"]["gp_event"]
        assert gp.num_rows == clean_gp
        assert size["gp_fall_entries_added"] > 0


def _day(iso: str) -> Any:
    from datetime import date

    return date.fromisoformat(iso)


def test_the_command_writes_a_later_extract_and_refuses_mixed_settings(
    month: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "quarter"
    done = runner.invoke(
        app, ["synth", "--later-of", str(month), "--months", "2", "--out", str(out), "--json"]
    )
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["extract_date"] == "2025-06-30" and summary["start"] == "2022-07-01"
    assert manifest(out)["county_start"] == "2022-04-01"
    refused = runner.invoke(
        app, ["synth", "--later-of", str(month), "--people", "50", "--out", str(tmp_path / "x")]
    )
    assert refused.exit_code == 1 and "drop --people" in refused.output
    refused = runner.invoke(app, ["synth", "--drift", "prevalence", "--out", str(tmp_path / "y")])
    assert refused.exit_code == 1 and "give --later-of" in refused.output
    refused = runner.invoke(
        app, ["synth", "--later-of", str(month), "--drift", "flood", "--out", str(tmp_path / "z")]
    )
    assert refused.exit_code == 1 and "--drift must be one of" in refused.output
