"""`carerisk codes report`: on a store of our own with codes no list holds, and on a small
synthetic county loaded through the real CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from codelists import CodeLists
from codelists.checks import snomed_valid
from codelists.report import code_report
from features.home import Home
from tests.codelists.site import append_row, site_folder
from tests.features._records import gp, make_store, person, rx, spell
from tests.live import carerisk


def _unlisted_snomed(lists: CodeLists) -> str:
    """A valid SNOMED CT identifier that no list holds."""
    known = {c for item in lists.lists.values() for c in item.codes}
    base = 123456700
    while True:
        base += 10
        for digit in range(10):
            code = f"{base}{digit}"
            if snomed_valid(code) and code not in known:
                return code


def test_the_report_counts_matches_and_the_codes_no_list_holds(tmp_path: Path) -> None:
    lists = CodeLists.load()
    unknown = _unlisted_snomed(lists)
    records = [
        person("REP001"),
        person("REP002"),
        gp("REP001", date(2023, 1, 1), "26929004"),  # Alzheimer's disease: in DEM_COD
        gp("REP002", date(2023, 1, 1), "26929004"),
        *(gp("REP001", date(2023, 2, d), unknown) for d in (1, 2, 3)),
        spell("REP002", date(2023, 3, 1), date(2023, 3, 4), diags=["J189", "F039"]),
        rx("REP001", date(2023, 4, 1), "0403030Q0", "sertraline"),
    ]
    store = make_store(tmp_path / "own.duckdb", records)
    found = code_report(store, lists, top=5)
    by_name = {item["name"]: item for item in found["lists"]}
    assert by_name["condition_dementia"]["records"] == 2
    assert by_name["condition_dementia"]["people"] == 2
    assert by_name["condition_dementia_icd10"]["records"] == 1  # F039 by the prefix F03
    assert by_name["frid_antidepressants"]["people"] == 1
    assert by_name["condition_parkinsons"]["records"] == 0
    assert not any(name.startswith("synthetic_") for name in by_name)
    gp_codes = found["columns"]["gp_event.snomed_code"]
    assert gp_codes["rows"] == 5 and gp_codes["unmatched_rows"] == 3
    assert gp_codes["most_frequent_unmatched"] == [{"code": unknown, "count": 3, "term": None}]
    first = found["columns"]["hospital_episode.diag_01"]["most_frequent_unmatched"]
    assert first == [{"code": "J189", "count": 1, "term": "Pneumonia, unspecified"}]
    assert found["columns"]["hospital_episode.diag_02"]["unmatched_rows"] == 0
    assert found["codelists"]["digest"] == lists.digest


@pytest.mark.slow  # synth, load and three CLI calls
def test_codes_report_on_a_synthetic_county(tmp_path: Path) -> None:
    home = tmp_path / "home"
    extract = Home(home).extract_dir
    for args in (("synth", "--people", "1500", "--seed", "4", "--out", str(extract)),
                 ("load", str(extract))):  # fmt: skip
        result = carerisk(home, *args)
        assert result.returncode == 0, result.stderr[-2000:]
    result = carerisk(home, "codes", "report", "--json", "--top", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout)
    by_name = {item["name"]: item for item in found["lists"]}
    assert by_name["condition_dementia"]["people"] > 0
    assert by_name["efi_hypertension"]["records"] > 0
    assert by_name["fall_icd10"]["records"] > 0
    gp_codes = found["columns"]["gp_event.snomed_code"]
    assert 0 < gp_codes["unmatched_rows"] < gp_codes["rows"]  # routine codes no list names
    assert len(gp_codes["most_frequent_unmatched"]) == 3
    text = carerisk(home, "codes", "report")
    assert text.returncode == 0 and "gp_event.snomed_code" in text.stdout


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_a_refused_site_folder_is_named_in_one_line(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    line = append_row(folder, "condition_dementia", "52448007")  # a bad check digit
    home = tmp_path / "home"
    Home(home).store_path.parent.mkdir(parents=True)
    make_store(Home(home).store_path, [person("REP003")])
    result = carerisk(home, "codes", "report", env={"CARERISK_CODELISTS": str(folder)})
    assert result.returncode == 1
    said = " ".join(result.stderr.split())
    assert "the code lists are refused" in said and f"condition_dementia.csv, line {line}" in said
