"""Coverage: tables a source lacks and columns it does not supply, from manifest to store."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from features import contract
from features.coverage import (
    Coverage,
    CoverageError,
    compare,
    from_block,
    label_refusal,
    read_store_coverage,
)
from features.engines import compute_features
from features.feature_list import FEATURES, feature
from features.outcomes import COMPLEX_DEPENDENCY, FALLS
from features.store import ContractError, load_extract
from tests.features.conftest import small_extract, write_extract

Tables = dict[str, pd.DataFrame]
PERSON_GONE = ["lsoa_code", "imd_decile", "district", "practice_code", "gp_system"]
ABSENT = {
    "social_care": "OMOP CDM holds no adult social care",
    "ambulance_incident": "OMOP CDM holds no ambulance call-outs",
    "fire_home_visit": "OMOP CDM holds no fire-service visits",
}


def block(
    absent: dict[str, str] | None = None, not_supplied: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """A coverage block as an importer writes it (the shared contract's shape)."""
    absent = ABSENT if absent is None else absent
    gone = {"person": PERSON_GONE} if not_supplied is None else not_supplied
    tables: dict[str, Any] = {}
    for name in contract.TABLE_NAMES:
        if name in absent:
            tables[name] = {"state": "absent", "sources": [], "reason": absent[name]}
        else:
            tables[name] = {"state": "mapped", "sources": ["x"], "not_supplied": gone.get(name, [])}
    return {
        "source": {"kind": "omop", "version": "5.4", "location": "test.duckdb"},
        "maps": {},
        "tables": tables,
        "sources": {"x": {"read": 1, "written": 1, "dropped": {}}},
    }


def lacking(tables: Tables, cover: dict[str, Any]) -> Tables:
    """The tables as a source lacking `cover`'s absent tables and not-supplied columns has them."""
    out = {}
    for name, frame in tables.items():
        entry = cover["tables"][name]
        if entry["state"] == "absent":
            continue
        frame = frame.copy()
        for col in entry.get("not_supplied", []):
            frame[col] = pd.Series([None] * len(frame), dtype=frame[col].dtype)
        out[name] = frame
    return out


def write_covered(
    folder: Path, cover: dict[str, Any], kind: str = "full", tables: Tables | None = None
) -> Path:
    write_extract(folder, lacking(small_extract() if tables is None else tables, cover), kind=kind)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["coverage"] = cover
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def omop_like(county: Path, out: Path) -> Path:
    """The county as an OMOP source gives it: no social care, fire or ambulance files, the
    area fields empty, and a manifest carrying the coverage block."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    cover = block()
    out.mkdir(parents=True)
    for name, entry in cover["tables"].items():
        if entry["state"] == "absent":
            continue
        table = pq.read_table(county / f"{name}.parquet")
        for col in entry["not_supplied"]:
            i = table.schema.get_field_index(col)
            table = table.set_column(i, col, pa.nulls(len(table), table.schema.field(col).type))
        pq.write_table(table, out / f"{name}.parquet")
    manifest = json.loads((county / "manifest.json").read_text())
    manifest["coverage"] = cover
    (out / "manifest.json").write_text(json.dumps(manifest))
    if (county / "truth").is_dir():
        shutil.copytree(county / "truth", out / "truth")
    return out


def log_rows(store: Path) -> dict[str, tuple[Any, ...]]:
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, table_state, not_supplied, source_file, rows_read FROM load_log "
            "WHERE load_id = (SELECT max(load_id) FROM load_log)"
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


# --- the block --------------------------------------------------------------------------


def test_the_contract_marks_the_columns_that_may_be_unsupplied() -> None:
    marked = {(t.name, c.name) for t in contract.TABLES for c in t.columns if c.may_be_unsupplied}
    assert marked == {
        *(("person", c) for c in PERSON_GONE),
        ("hospital_episode", "main_specialty"),
        ("ae_attendance", "disposal"),
    }


def test_a_block_reads_absent_tables_and_columns_not_supplied() -> None:
    cover = from_block(block(), "manifest.json")
    assert dict(cover.absent) == ABSENT
    assert dict(cover.not_supplied) == {"person": tuple(PERSON_GONE)}
    assert cover.state("social_care") == "absent" and cover.state("gp_event") == "mapped"
    assert not cover.supplied("person", "imd_decile") and cover.supplied("person", "sex")
    assert Coverage().complete and not cover.complete


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda b: b["tables"].pop("death"), "missing: ['death']"),
        (lambda b: b["tables"].update(visits={"state": "mapped"}), "unknown: ['visits']"),
        (lambda b: b["tables"]["death"].update(state="partial"), "death.state 'partial'"),
        (
            lambda b: b["tables"]["person"].update(not_supplied=["sex"]),
            "person.not_supplied lists ['sex']",
        ),
        (
            lambda b: b["tables"]["person"].update(state="absent"),
            "person cannot be absent",
        ),
        (
            lambda b: b["sources"].update(visit={"read": 9, "written": 6, "dropped": {"x": 2}}),
            "sources.visit: 9 rows read but 6 written and 2 dropped",
        ),
        (
            lambda b: b["sources"].update(visit={"read": 9}),
            "sources.visit needs whole numbers",
        ),
    ],
)
def test_a_block_that_breaks_the_contract_is_refused(change: Any, words: str) -> None:
    bad = block()
    change(bad)
    with pytest.raises(CoverageError, match=words.replace("[", r"\[").replace("]", r"\]")):
        from_block(bad, "manifest.json")


# --- the load ----------------------------------------------------------------------------


def test_absent_tables_and_columns_not_supplied_load_and_are_recorded(tmp_path: Path) -> None:
    folder = write_covered(tmp_path / "omop", block())
    store = tmp_path / "store.duckdb"
    report = load_extract(folder, store)
    assert report.ok and report.clean, report.to_dict()
    assert report.table("social_care").state == "absent"
    assert report.table("social_care").rows_read == 0
    assert report.table("person").not_supplied == PERSON_GONE
    assert report.to_dict()["coverage"]["absent"] == ABSENT
    logged = log_rows(store)
    assert logged["social_care"] == ("absent", "", None, 0)
    assert logged["person"][:2] == ("mapped", ",".join(PERSON_GONE))
    assert logged["person"][3] == 5
    assert dict(read_store_coverage(store).absent) == ABSENT
    with duckdb.connect(str(store), read_only=True) as con:
        stored = con.execute("SELECT count(imd_decile), count(*) FROM person").fetchone()
    assert stored == (0, 5)


def test_a_null_in_a_supplied_required_column_is_still_quarantined(tmp_path: Path) -> None:
    tables = small_extract()
    tables["ae_attendance"].loc[0, "disposal"] = None
    folder = write_covered(tmp_path / "omop", block(), tables=tables)
    report = load_extract(folder, tmp_path / "store.duckdb")
    assert report.table("ae_attendance").rows_quarantined == 1
    assert report.table("ae_attendance").reasons == {"missing_value": 1}


def test_a_column_not_supplied_may_be_empty_in_its_own_table(tmp_path: Path) -> None:
    tables = small_extract()
    tables["ae_attendance"]["disposal"] = None
    cover = block(not_supplied={"person": PERSON_GONE, "ae_attendance": ["disposal"]})
    report = load_extract(write_covered(tmp_path / "omop", cover, tables=tables), tmp_path / "s")
    assert report.table("ae_attendance").rows_loaded == 2 and report.clean


def test_a_value_in_a_column_said_not_supplied_stops_the_load(tmp_path: Path) -> None:
    folder = write_covered(tmp_path / "omop", block())
    person = pd.read_parquet(folder / "person.parquet")
    person.loc[2, "district"] = "Worcester"
    person.to_parquet(folder / "person.parquet", index=False)
    with pytest.raises(ContractError, match="table person, column district, row 3"):
        load_extract(folder, tmp_path / "store.duckdb")


def test_a_file_for_a_table_said_absent_stops_the_load(tmp_path: Path) -> None:
    folder = write_covered(tmp_path / "omop", block())
    small_extract()["social_care"].to_parquet(folder / "social_care.parquet", index=False)
    with pytest.raises(ContractError, match="table social_care: manifest.json's coverage says"):
        load_extract(folder, tmp_path / "store.duckdb")


def test_an_increment_keeps_the_coverage_and_may_not_change_it(tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    load_extract(write_covered(tmp_path / "first", block()), store)
    later = lacking(small_extract(), block())
    write_extract(tmp_path / "later", later, kind="increment")  # no block: the store's stays
    load_extract(tmp_path / "later", store)
    assert dict(read_store_coverage(store).absent) == ABSENT
    assert log_rows(store)["social_care"][0] == "absent"
    other = write_covered(tmp_path / "other", block(absent={}), kind="increment")
    with pytest.raises(ContractError, match="a change of coverage needs a full extract"):
        load_extract(other, store)


def test_a_full_extract_with_every_table_retires_the_old_coverage(tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    load_extract(write_covered(tmp_path / "first", block()), store)
    write_extract(tmp_path / "full", small_extract(), kind="full")
    load_extract(tmp_path / "full", store)
    assert read_store_coverage(store).complete


def test_a_store_from_before_coverage_counts_as_complete(tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    with duckdb.connect(str(store)) as con:
        con.execute("CREATE TABLE load_log (load_id BIGINT)")
        con.execute("INSERT INTO load_log VALUES (1)")
    assert read_store_coverage(store).complete
    assert read_store_coverage(tmp_path / "none.duckdb").complete


# --- features, outcomes and models --------------------------------------------------------


def covered_store(tmp_path: Path) -> Path:
    store = tmp_path / "store.duckdb"
    load_extract(write_covered(tmp_path / "omop", block()), store)
    return store


@pytest.mark.slow  # two stores loaded and their features computed
def test_features_of_absent_sources_are_missing_not_zero(tmp_path: Path) -> None:
    store = covered_store(tmp_path)
    cover = read_store_coverage(store)
    missing = cover.missing_features(FEATURES)
    frame = compute_features(store, date(2024, 1, 1))
    full = tmp_path / "full.duckdb"
    load_extract(write_extract(tmp_path / "all", small_extract()), full)
    whole = compute_features(full, date(2024, 1, 1))
    for name in ("home_care_now", "ambulance_callouts_365d", "fire_visited", "imd_decile"):
        assert name in missing
        assert frame[name].isna().all(), name
        assert whole[name].notna().any(), name
    assert "falls_365d" in cover.partial_features(FEATURES)
    assert "falls_365d" not in missing and frame["falls_365d"].notna().all()
    present = [f.name for f in FEATURES if f.name not in missing and f.name != "falls_365d"]
    gp_only = [n for n in present if set(feature(n).sources) <= {"gp_event", "prescription"}]
    pd.testing.assert_frame_equal(frame[gp_only], whole[gp_only])


def test_a_feature_missing_when_a_column_it_reads_is_not_supplied() -> None:
    cover = from_block(block(absent={}, not_supplied={"hospital_episode": ["main_specialty"]}), "m")
    assert cover.missing_features(FEATURES) == ["mental_health_admissions_730d"]


def test_an_outcome_whose_label_needs_an_absent_table_is_refused() -> None:
    cover = from_block(block(), "manifest.json")
    why = label_refusal(COMPLEX_DEPENDENCY, cover)
    assert why is not None
    assert "complex dependency cannot be trained" in why
    assert "social_care" in why and "OMOP CDM holds no adult social care" in why
    assert label_refusal(FALLS, cover) is None
    assert label_refusal(COMPLEX_DEPENDENCY, Coverage()) is None


def test_a_model_is_refused_by_a_store_with_other_coverage() -> None:
    omop = from_block(block(), "manifest.json")
    record = omop.model_record(FEATURES)
    assert compare(record, omop) is None
    assert compare(None, Coverage()) is None
    trained_without = compare(record, Coverage())
    assert trained_without is not None and "social_care is absent" in trained_without
    assert trained_without.endswith("This store: every table mapped and every column supplied.")
    served_without = compare(Coverage().model_record(FEATURES), omop)
    assert served_without is not None and "train the model again" in served_without


def test_the_load_command_shows_what_the_source_lacks(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from carerisk.cli import app

    folder = write_covered(tmp_path / "omop", block())
    home = tmp_path / "home"
    done = CliRunner().invoke(app, ["--home", str(home), "load", str(folder)], terminal_width=200)
    assert done.exit_code == 0, done.output
    assert "What the source lacks" in done.output
    assert "OMOP CDM holds no adult social care" in done.output
    assert "lsoa_code, imd_decile" in done.output
    shown = CliRunner().invoke(app, ["--home", str(home), "load", str(folder), "--json"])
    assert json.loads(shown.output)["coverage"]["absent"] == ABSENT
