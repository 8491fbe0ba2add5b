"""The outcome set: lookups by either spelling, extra outcome modules, the definitions, and
the snapshot's cohort flags following the same rule as the training cohorts."""

from __future__ import annotations

import random
import sys
import types
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from codelists import CodeListError, CodeLists
from features.cohorts import cohort
from features.engines import open_sources
from features.home import Home
from features.outcomes import (
    COMPLEX_DEPENDENCY,
    FALLS,
    PRODUCT,
    Cohort,
    OutcomeSet,
    UnknownOutcome,
    outcome_set,
)
from features.snapshot import read_snapshot, write_snapshot
from tests import emergency_outcome
from tests.codelists.site import append_row, replace_codes, site_folder
from tests.features._records import care, death, make_store, person, random_county

D = date(2023, 4, 1)


def test_either_spelling_finds_the_outcome_and_others_are_refused_by_name() -> None:
    assert PRODUCT.get("complex-dependency") is COMPLEX_DEPENDENCY
    assert PRODUCT.get(" Complex_Dependency ") is COMPLEX_DEPENDENCY
    assert PRODUCT.get("falls") is FALLS
    with pytest.raises(UnknownOutcome, match="choose one of falls, complex-dependency"):
        PRODUCT.get("strokes")
    assert PRODUCT.by_model_name("carerisk-complex-dependency") is COMPLEX_DEPENDENCY
    with pytest.raises(UnknownOutcome, match="carerisk-falls, carerisk-complex-dependency"):
        PRODUCT.by_model_name("carerisk-strokes")


def test_names_spellings_and_model_names_follow_from_the_name() -> None:
    assert PRODUCT.names() == ("falls", "complex_dependency")
    assert [o.cli_name for o in PRODUCT] == ["falls", "complex-dependency"]
    assert [o.model_name for o in PRODUCT] == ["carerisk-falls", "carerisk-complex-dependency"]
    assert [o.cohort_column for o in PRODUCT] == ["cohort_falls", "cohort_complex_dependency"]
    assert FALLS.outside_cohort() == (
        "the falls model applies only to people aged 65 or over, alive and not living in a care "
        "home at the index date"
    )


def test_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="lower case words"):
        replace(FALLS, name="Falls-12m")
    with pytest.raises(ValueError, match="horizon_months"):
        replace(FALLS, horizon_months=0)
    with pytest.raises(ValueError, match="min_age"):
        Cohort(min_age=-1, words="anyone")
    with pytest.raises(ValueError, match="in words"):
        Cohort(min_age=18, words=" ")
    with pytest.raises(ValueError, match="registered twice"):
        OutcomeSet((FALLS, COMPLEX_DEPENDENCY, FALLS))


def test_an_outcome_module_adds_its_outcomes_after_the_products() -> None:
    registry = outcome_set([emergency_outcome.MODULE])
    assert registry.names() == ("falls", "complex_dependency", "emergency_admission")
    assert registry.get("emergency-admission") is emergency_outcome.EMERGENCY_ADMISSION
    assert outcome_set() == PRODUCT  # nothing named, nothing added


def test_a_bad_outcome_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownOutcome, match="'tests.no_such_outcomes' cannot be imported"):
        outcome_set(["tests.no_such_outcomes"])
    empty = types.ModuleType("tests_empty_outcomes")
    monkeypatch.setitem(sys.modules, "tests_empty_outcomes", empty)
    with pytest.raises(UnknownOutcome, match="must define OUTCOMES, a tuple of Outcome"):
        outcome_set(["tests_empty_outcomes"])


def test_default_bands_are_the_products_and_differ_only_in_cut_points() -> None:
    assert FALLS.bands.cuts == (0.05, 0.10, 0.20)
    assert COMPLEX_DEPENDENCY.bands.cuts == (0.05, 0.15, 0.30)
    assert FALLS.bands.labels == COMPLEX_DEPENDENCY.bands.labels


def test_snapshot_flags_are_the_training_cohorts(tmp_path: Path) -> None:
    """write_snapshot's flags come from features.cohorts.cohort, for every registered outcome:
    on a random county they pick out exactly the cohort's people."""
    registry = outcome_set([emergency_outcome.MODULE])
    county = random_county(random.Random(5), 300, date(2021, 4, 1), date(2024, 3, 31))
    store = make_store(Home(tmp_path).store_path, county)
    write_snapshot(store, D, registry)
    snapshot = read_snapshot(store).set_index("person_id")
    assert {"district", "practice_code"} <= set(snapshot.columns)
    with open_sources(store) as src:
        for outcome in registry:
            members = set(cohort(src, outcome, D).to_pandas()["person_id"])
            flagged = set(snapshot.index[snapshot[outcome.cohort_column].astype(bool)])
            assert flagged == members, outcome.name
            assert 0 < len(flagged) < len(snapshot), outcome.name


def test_care_home_residents_and_deaths_on_the_day_are_flagged_out(tmp_path: Path) -> None:
    records = [
        person("AT_HOME", born=date(1940, 1, 1)),
        person("IN_CARE", born=date(1940, 1, 1)),
        care("IN_CARE", "nursing", date(2022, 6, 1)),
        person("DIED_ON", born=date(1940, 1, 1)),
        death("DIED_ON", D),
    ]
    store = make_store(Home(tmp_path).store_path, records)
    write_snapshot(store, D, PRODUCT)
    snapshot = read_snapshot(store).set_index("person_id")
    assert list(snapshot.index) == ["AT_HOME", "DIED_ON", "IN_CARE"]  # features for everyone
    for outcome in PRODUCT:
        assert snapshot[outcome.cohort_column].astype(bool).to_dict() == {
            "AT_HOME": True, "DIED_ON": False, "IN_CARE": False}  # fmt: skip


def test_the_at_risk_bands_and_fhir_codes_come_from_the_definition() -> None:
    assert FALLS.at_risk(FALLS.bands) == ("very high", "high")
    assert replace(FALLS, at_risk_bands=1).at_risk(FALLS.bands) == ("very high",)
    assert [FALLS.risk_code(b) for b in FALLS.bands.labels] == ["low", "moderate", "high", "high"]
    assert FALLS.risk_code("unheard of") is None
    with pytest.raises(ValueError, match="risk-probability"):
        replace(FALLS, fhir_risk=(("high", "certain"),))
    with pytest.raises(ValueError, match="at_risk_bands"):
        replace(FALLS, at_risk_bands=0)


def test_the_falls_codings_are_read_from_the_code_lists(tmp_path: Path) -> None:
    packaged = outcome_set((), CodeLists.load()).get("falls")
    assert packaged.snomed == ("161898004", "Falls")
    assert packaged.at_risk_finding == ("129839007", "At risk for falls")
    assert PRODUCT.get("falls").snomed is None  # uncoded until lists are given
    folder = site_folder(tmp_path)
    replace_codes(folder, "at_risk_falls", [("414191008", "a site's own concept")])
    site = outcome_set((), CodeLists.load(folder)).get("falls")
    assert site.at_risk_finding == ("414191008", "a site's own concept")
    assert site == packaged  # the codings are how an outcome is written, not what it is


def test_a_site_folder_without_an_outcome_coding_list_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    index = folder / "index.csv"
    rows = [r for r in index.read_text().splitlines() if not r.startswith("outcome_falls,")]
    index.write_text("\n".join(rows) + "\n")
    with pytest.raises(KeyError, match=r"no code list named 'outcome_falls' in .*index\.csv"):
        outcome_set((), CodeLists.load(folder))


def test_an_outcome_coding_list_must_hold_one_snomed_concept(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    append_row(folder, "outcome_falls", "217082002")
    with pytest.raises(CodeListError, match=r"outcome_falls\.csv: .* holds 2 snomed code"):
        outcome_set((), CodeLists.load(folder))
