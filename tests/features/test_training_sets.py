"""Training sets: index dates, cohort, descriptors, objections, no leakage, temporal split."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.fairness import FAIRNESS_GROUPS
from features.feature_list import feature_names
from features.home import Home
from features.outcomes import COMPLEX_DEPENDENCY, FALLS
from features.training_sets import (
    build_training_set,
    index_dates,
    split_temporal,
)
from tests.features._records import ae, care, death, gp, make_store, person, spell

DATES = [date(2023, 1, 1), date(2023, 4, 1)]


def _store(tmp_path: Path) -> Path:
    return make_store(
        Home(tmp_path).store_path,
        [
            person("FALLER", born=date(1940, 1, 1), ethnicity=None, imd_decile=3),
            ae("FALLER", date(2023, 2, 1), cause="W19X"),  # after the first index date
            gp("FALLER", date(2021, 6, 1), "60621009", 25.0),
            person("YOUNGR", born=date(1990, 1, 1), sex="M", gp_system="SystmOne"),
            spell("YOUNGR", date(2023, 5, 1), date(2023, 6, 1)),  # 31-day stay
            person("CAREHM", born=date(1930, 1, 1)),
            care("CAREHM", "nursing", date(2020, 1, 1)),
            person("GONE01", born=date(1935, 1, 1)),
            death("GONE01", date(2023, 2, 1)),
        ],
    )


def test_index_dates_are_quarter_starts_with_a_full_year_each_side() -> None:
    dates = index_dates(date(2021, 4, 1), date(2024, 3, 31), 12)
    assert dates == [date(2022, 4, 1), date(2022, 7, 1), date(2022, 10, 1), date(2023, 1, 1),
                     date(2023, 4, 1)]  # fmt: skip
    two = [date(2022, 4, 1), date(2022, 7, 1)]
    assert index_dates(date(2021, 2, 10), date(2023, 6, 30), 12) == two
    assert index_dates(date(2021, 4, 1), date(2022, 3, 31), 12) == []
    # a six-month horizon leaves room for two more quarters at the end
    assert index_dates(date(2021, 4, 1), date(2024, 3, 31), 6)[-3:] == [
        date(2023, 4, 1), date(2023, 7, 1), date(2023, 10, 1)]  # fmt: skip


def test_falls_training_set(tmp_path: Path) -> None:
    frame = build_training_set(_store(tmp_path), FALLS, DATES, data_start=date(2021, 1, 1))
    expected = ["person_id", "index_date", *feature_names(), "label", "died_before_event",
                "follow_up_days", *FAIRNESS_GROUPS]  # fmt: skip
    assert list(frame.columns) == expected
    # CAREHM (nursing care) and YOUNGR (under 65) are out; GONE01 dies before 2023-04-01
    assert list(zip(frame["person_id"], frame["index_date"].dt.date, strict=True)) == [
        ("FALLER", DATES[0]), ("GONE01", DATES[0]), ("FALLER", DATES[1])]  # fmt: skip
    first = frame.iloc[0]
    assert first["label"] == 1 and first["falls_730d"] == 0  # the fall is in the future
    assert frame.iloc[2]["falls_90d"] == 1 and frame.iloc[2]["label"] == 0
    gone = frame.iloc[1]
    assert gone["died_before_event"] == 1 and gone["follow_up_days"] == 31
    assert first["ethnicity"] == "not recorded" and first["imd_quintile"] == 2
    assert first["age_band"] == "75-84" and first["sex"] == "F"
    assert first["gp_system"] == "EMIS" and first["district"] == "Wychavon"
    # GP contact in 730 days, BMI, two years of data; no ethnicity
    assert first["completeness"] == "medium"


def test_complex_dependency_objections_and_split(tmp_path: Path) -> None:
    store = _store(tmp_path)
    frame = build_training_set(store, COMPLEX_DEPENDENCY, DATES)
    assert set(frame["person_id"]) == {"FALLER", "YOUNGR", "GONE01"}
    young = frame[frame["person_id"] == "YOUNGR"]
    assert young["label"].tolist() == [1, 1]  # the 31-day stay is in both horizons
    assert young["age_band"].tolist() == ["18-44", "18-44"]
    left = build_training_set(store, COMPLEX_DEPENDENCY, DATES, objections={"YOUNGR"})
    assert "YOUNGR" not in set(left["person_id"])
    train, validation = split_temporal(frame)
    assert set(train["index_date"].dt.date) == {DATES[0]}
    assert set(validation["index_date"].dt.date) == {DATES[1]}
    assert len(train) + len(validation) == len(frame)


def test_rows_never_see_their_own_future(tmp_path: Path) -> None:
    """Features of the earlier rows equal features computed with later records removed."""
    store = _store(tmp_path)
    full = build_training_set(store, FALLS, DATES, data_start=date(2021, 1, 1))
    from features.engines import compute_features

    early = compute_features(store, DATES[0], data_start=date(2021, 1, 1)).set_index("person_id")
    rows = full[full["index_date"].dt.date == DATES[0]].set_index("person_id")
    names = feature_names()
    pd.testing.assert_frame_equal(rows[names], early.loc[rows.index, names])


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one index date"):
        build_training_set(Home(tmp_path).store_path, FALLS, [])
    with pytest.raises(ValueError, match="two index dates"):
        split_temporal(pd.DataFrame({"index_date": [pd.Timestamp("2023-01-01")]}))


def test_snapshot_and_cli(tmp_path: Path) -> None:
    """`carerisk features` writes the snapshot with each outcome's cohort flag and the places;
    read_snapshot reads it back."""
    import json

    from typer.testing import CliRunner

    from carerisk.cli import app
    from features.snapshot import read_snapshot

    home = Home(tmp_path / "home")
    home.root.mkdir()
    _store(home.root)
    result = CliRunner().invoke(app, ["--home", str(home.root), "features", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["index_date"] == "2023-05-02"  # the day after the latest event date
    assert summary["rows"] == 3 and summary["columns"] == len(feature_names())
    snap = read_snapshot(home.store_path, ["YOUNGR"])
    assert snap["person_id"].tolist() == ["YOUNGR"]
    assert snap["emergency_admissions_90d"].tolist() == [1.0]
    assert str(snap["index_date"].iloc[0])[:10] == "2023-05-02"
    everyone = read_snapshot(home.store_path).set_index("person_id")
    assert everyone.loc["FALLER", ["district", "practice_code"]].tolist() == ["Wychavon", "M81001"]
    # the same rule as training: CAREHM (nursing care) is in neither cohort, YOUNGR only in one
    flags = everyone[["cohort_falls", "cohort_complex_dependency"]].astype(bool)
    assert flags.to_dict("index") == {
        "CAREHM": {"cohort_falls": False, "cohort_complex_dependency": False},
        "FALLER": {"cohort_falls": True, "cohort_complex_dependency": True},
        "YOUNGR": {"cohort_falls": False, "cohort_complex_dependency": True},
    }
    bad = CliRunner().invoke(app, ["--home", str(home.root), "features", "--index-date", "x"])
    assert bad.exit_code == 1
