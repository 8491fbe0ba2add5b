"""Labels: each outcome route, death as the competing event, cohort exclusions, settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.cohorts import cohort
from features.engines import open_sources
from features.labels import LabelSettings, add_months, labels
from features.outcomes import FALLS, PRODUCT, UnknownOutcome
from tests.features._records import ae, ambulance, care, death, gp, make_store, person, spell

D = date(2023, 4, 1)


def _second(tmp_path: Path) -> Path:
    folder = tmp_path / "second"
    folder.mkdir(exist_ok=True)
    return folder


def _labels(tmp_path: Path, records: list, outcome: str, **kw: object) -> pd.DataFrame:
    store = make_store(tmp_path / f"{outcome}.duckdb", records)
    with open_sources(store) as src:
        frame = labels(src, PRODUCT.get(outcome), D, LabelSettings(**kw)).to_pandas()  # type: ignore[arg-type]
    return frame.set_index("person_id").sort_index()


def _cohort(tmp_path: Path, records: list, outcome: str) -> list[str]:
    store = make_store(tmp_path / f"c{outcome}.duckdb", records)
    with open_sources(store) as src:
        return sorted(cohort(src, PRODUCT.get(outcome), D).to_pandas()["person_id"])


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2023, 4, 1), 12) == date(2024, 4, 1)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 11, 15), 3) == date(2024, 2, 15)


def test_falls_routes(tmp_path: Path) -> None:
    records = [
        *(person(p) for p in ("AEFALL", "HESPOS", "HIPFRX", "AMBLIE", "GPFALL", "NOFALL",
                              "BEFORE", "AFTERH", "ELECTV")),
        ae("AEFALL", date(2023, 5, 1), cause="W19X"),
        spell("HESPOS", date(2023, 6, 1), date(2023, 6, 4), diags=["I10X", "R69X", "W06X"]),
        spell("HIPFRX", date(2023, 7, 1), date(2023, 7, 20), diags=["S721"]),
        ambulance("AMBLIE", date(2024, 3, 31), "long_lie"),
        gp("GPFALL", D, "217082002"),  # on D: inside the horizon
        ae("NOFALL", date(2023, 5, 1), cause="X59X"),
        ae("BEFORE", date(2023, 3, 31), cause="W19X"),
        ae("AFTERH", date(2024, 4, 1), cause="W19X"),  # first day after the horizon
        spell("ELECTV", date(2023, 6, 1), date(2023, 6, 4), method="elective", diags=["S720"]),
    ]  # fmt: skip
    frame = _labels(tmp_path, records, "falls")
    hits = set(frame.index[frame["label"] == 1])
    assert hits == {"AEFALL", "HESPOS", "HIPFRX", "AMBLIE", "GPFALL"}
    assert (frame["follow_up_days"] == 366).all()  # 2023-04-01 .. 2024-04-01
    assert frame["died_before_event"].sum() == 0


def test_a_fracture_counts_as_a_fall_only_as_the_primary_diagnosis(tmp_path: Path) -> None:
    """An emergency admission for a fragility fracture (its primary diagnosis) is a fall; a
    fracture lower on the list, with no fall cause, is not."""
    records = [
        person("PRIMRY"), spell("PRIMRY", date(2023, 7, 1), date(2023, 7, 9), diags=["S525"]),
        person("SECOND"),
        spell("SECOND", date(2023, 7, 1), date(2023, 7, 9), diags=["I50", "S720"]),
    ]  # fmt: skip
    frame = _labels(tmp_path, records, "falls")
    assert frame.loc["PRIMRY", "label"] == 1
    assert frame.loc["SECOND", "label"] == 0


def test_w02_exclusion_is_a_setting(tmp_path: Path) -> None:
    records = [person("SKATES"), ae("SKATES", date(2023, 5, 1), cause="W02X")]
    assert _labels(tmp_path, records, "falls").loc["SKATES", "label"] == 1
    excluded = _labels(_second(tmp_path), records, "falls", exclude_optional_fall_codes=True)
    assert excluded.loc["SKATES", "label"] == 0


def test_death_is_the_competing_event(tmp_path: Path) -> None:
    records = [
        person("DIEDFI"), death("DIEDFI", date(2023, 6, 1)),
        person("FELLDI"), ae("FELLDI", date(2023, 5, 1), cause="W19X"),
        death("FELLDI", date(2023, 5, 10)),
        person("SAMEDY"), ae("SAMEDY", date(2023, 5, 1), cause="W19X"),
        death("SAMEDY", date(2023, 5, 1)),
        person("GHOSTF"), death("GHOSTF", date(2023, 5, 1)),
        gp("GHOSTF", date(2023, 5, 2), "1912002"),  # after death: does not count
        person("LATERD"), death("LATERD", date(2024, 6, 1)),
    ]  # fmt: skip
    frame = _labels(tmp_path, records, "falls")
    assert list(frame.loc["DIEDFI"]) == [0, 1, 61]
    assert list(frame.loc["FELLDI"]) == [1, 0, 39]
    assert list(frame.loc["SAMEDY"]) == [1, 0, 30]
    assert list(frame.loc["GHOSTF"]) == [0, 1, 30]
    assert list(frame.loc["LATERD"]) == [0, 0, 366]


def test_complex_dependency_routes(tmp_path: Path) -> None:
    records = [
        *(person(p, born=date(1960, 1, 1)) for p in (
            "HOMECR", "LOWHRS", "RESIDE", "THREEA", "TWOADM", "LONGST", "SHORTS", "OPENST",
            "OLDCAR")),
        care("HOMECR", "home_care", date(2023, 8, 1), None, 14.0),
        care("LOWHRS", "home_care", date(2023, 8, 1), None, 13.5),
        care("RESIDE", "nursing", date(2024, 1, 1)),
        *(spell("THREEA", date(2023, m, 1), date(2023, m, 3)) for m in (5, 7, 9)),
        *(spell("TWOADM", date(2023, m, 1), date(2023, m, 3)) for m in (5, 7)),
        spell("TWOADM", date(2023, 9, 1), date(2023, 9, 3), method="elective"),
        spell("LONGST", date(2023, 5, 1), date(2023, 5, 23)),  # 22 days
        spell("SHORTS", date(2023, 5, 1), date(2023, 5, 22)),  # 21 days: not over 21
        spell("OPENST", date(2024, 3, 1), None),  # still in: counted to the horizon end (31)
        care("OLDCAR", "home_care", date(2023, 1, 1), None, 30.0),  # started before D
    ]  # fmt: skip
    frame = _labels(tmp_path, records, "complex_dependency")
    hits = set(frame.index[frame["label"] == 1])
    assert hits == {"HOMECR", "RESIDE", "THREEA", "LONGST", "OPENST"}
    raised = _labels(_second(tmp_path), records, "complex_dependency", home_care_hours=10.0)
    assert raised.loc["LOWHRS", "label"] == 1


def test_cohort_exclusions(tmp_path: Path) -> None:
    records = [
        person("OLD065", born=date(1958, 4, 1)),  # 65 on D
        person("YOUNG1", born=date(1958, 5, 1)),  # 64 on D
        person("ADULT1", born=date(2005, 4, 1)),  # 18 on D
        person("CHILD1", born=date(2010, 1, 1)),
        person("INHOME", born=date(1930, 1, 1)),
        care("INHOME", "residential", date(2022, 1, 1)),
        person("LEFTHM", born=date(1930, 1, 1)),
        care("LEFTHM", "residential", date(2022, 1, 1), date(2023, 3, 31)),
        person("DEADBE", born=date(1930, 1, 1)),
        death("DEADBE", date(2023, 3, 1)),
    ]
    assert _cohort(tmp_path, records, "falls") == ["LEFTHM", "OLD065"]
    assert _cohort(_second(tmp_path), records, "complex_dependency") == [
        "ADULT1", "LEFTHM", "OLD065", "YOUNG1"]  # fmt: skip


def test_a_death_on_the_index_date_leaves_both_cohorts(tmp_path: Path) -> None:
    """Dead at the end of D: no follow-up, so in no cohort (a death the next day is followed)."""
    records = [
        person("DIEDON", born=date(1930, 1, 1)),
        death("DIEDON", D),
        person("DIEDAF", born=date(1930, 1, 1)),
        death("DIEDAF", date(2023, 4, 2)),
    ]
    for i, outcome in enumerate(PRODUCT.names()):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert _cohort(folder, records, outcome) == ["DIEDAF"], outcome
    followed = _labels(tmp_path, records, "falls")
    assert followed.loc["DIEDAF", "follow_up_days"] == 1
    assert followed.loc["DIEDAF", "died_before_event"] == 1


def test_bad_settings_and_outcome_are_rejected() -> None:
    with pytest.raises(ValueError, match="horizon_months"):
        replace(FALLS, horizon_months=0)
    with pytest.raises(ValueError, match="must not be negative"):
        LabelSettings(home_care_hours=-1)
    with pytest.raises(UnknownOutcome, match="unknown outcome 'death'"):
        PRODUCT.get("death")
