"""Each feature family on hand-built records with known answers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.engines import compute_features
from features.feature_list import feature_names
from features.home import Home
from tests.features._records import (
    ae,
    ambulance,
    care,
    death,
    fire,
    gp,
    make_store,
    person,
    rx,
    spell,
)

D = date(2024, 4, 1)
START = date(2021, 4, 1)


def _features(tmp_path: Path, records: list, data_start: date = START) -> pd.DataFrame:
    store = make_store(Home(tmp_path).store_path, records)
    return compute_features(store, D, data_start=data_start).set_index("person_id")


def test_population_and_a_person_with_no_records(tmp_path: Path) -> None:
    frame = _features(
        tmp_path,
        [
            person("EMPTY1", born=date(1950, 6, 1), ethnicity=None, lives_alone=None),
            person("DEAD01"),
            death("DEAD01", date(2024, 3, 31)),
            person("DIESON", born=date(1930, 1, 1)),
            death("DIESON", D),
            person("UNBORN", born=D),
        ],
    )
    assert list(frame.index) == ["DIESON", "EMPTY1"]  # dead before D and unborn left out
    assert list(frame.columns) == feature_names()
    row = frame.loc["EMPTY1"]
    assert row["age_years"] == 73
    assert pd.isna(row["ethnic_group"]) and row["ethnicity_recorded"] == 0
    assert pd.isna(row["lives_alone"])
    for name in (
        "ae_attendances_730d",
        "falls_90d",
        "medicines_90d",
        "has_dementia",
        "home_care_hours_now",
        "fire_visited",
        "efi",
        "emergency_bed_days_365d",
    ):
        assert row[name] == 0, name  # fmt: skip
    for name in (
        "bmi",
        "smoking_status",
        "days_since_last_fall",
        "fire_trip_hazards",
        "days_since_last_emergency_admission",
    ):
        assert pd.isna(row[name]), name  # fmt: skip
    assert row["efi_band"] == "fit"
    assert row["lookback_days"] == 730


def test_age_turns_on_the_birthday_month(tmp_path: Path) -> None:
    frame = _features(
        tmp_path, [person("APRIL1", born=date(1950, 4, 1)), person("MAYONE", born=date(1950, 5, 1))]
    )
    assert frame.loc["APRIL1", "age_years"] == 74
    assert frame.loc["MAYONE", "age_years"] == 73


def test_counts_by_window_and_bed_days(tmp_path: Path) -> None:
    p = "COUNT1"
    frame = _features(
        tmp_path,
        [
            person(p),
            ae(p, date(2024, 3, 31)),  # 1 day before: all windows
            ae(p, date(2023, 6, 1)),  # 365 and 730
            ae(p, date(2022, 5, 1)),  # 730 only
            ae(p, date(2021, 1, 1)),  # outside every window
            ae(p, D),  # on D: never counted
            ambulance(p, date(2024, 2, 1), "chest_pain"),
            # emergency stay 2024-03-20 .. still in hospital: 12 days up to D
            spell(p, date(2024, 3, 20), None),
            # stay straddling the 90-day boundary (2024-01-02): 2023-12-25 .. 2024-01-12
            spell(p, date(2023, 12, 25), date(2024, 1, 12)),
            spell(p, date(2023, 1, 1), date(2023, 1, 5), method="elective"),
            spell(p, date(2023, 2, 1), date(2023, 2, 20), specialty="710"),
        ],
    )
    row = frame.loc[p]
    assert (row["ae_attendances_90d"], row["ae_attendances_365d"], row["ae_attendances_730d"]) == (
        1, 2, 3)  # fmt: skip
    assert row["ambulance_callouts_90d"] == 1
    assert row["emergency_admissions_90d"] == 1
    assert row["emergency_admissions_365d"] == 2
    assert row["emergency_admissions_730d"] == 3
    assert row["emergency_bed_days_90d"] == 12 + 10
    assert row["emergency_bed_days_365d"] == 12 + 18
    assert row["emergency_bed_days_730d"] == 12 + 18 + 19
    assert row["mental_health_admissions_730d"] == 1
    assert row["days_since_last_emergency_admission"] == 12


def test_falls_from_every_source_counted_once_a_day(tmp_path: Path) -> None:
    p = "FALLS1"
    frame = _features(
        tmp_path,
        [
            person(p),
            ae(p, date(2024, 3, 1), cause="W19X"),
            spell(p, date(2024, 3, 1), date(2024, 3, 3), diags=["R69X", "W01X"]),  # same day
            ambulance(p, date(2023, 10, 1), "long_lie"),
            gp(p, date(2022, 10, 1), "1912002"),
            spell(p, date(2023, 7, 1), date(2023, 7, 9), diags=["S720"]),  # hip fracture
            ae(p, date(2023, 8, 1), diagnosis="S525"),  # wrist fracture
            spell(p, date(2023, 9, 1), date(2023, 9, 2), method="elective", diags=["W10X"]),
            ambulance(p, date(2024, 1, 1), "breathing"),
        ],
    )
    row = frame.loc[p]
    assert row["falls_90d"] == 1
    assert row["falls_365d"] == 3  # 2024-03-01, 2023-10-01, 2023-07-01
    assert row["falls_730d"] == 4
    assert row["fractures_365d"] == 2
    assert row["fractures_90d"] == 0
    assert row["days_since_last_fall"] == 31


def test_conditions_frailty_and_medicines(tmp_path: Path) -> None:
    p, q = "CONDS1", "FRAIL1"
    meds = [
        ("0403010A0", "sertraline"), ("0401010Z0", "zopiclone"), ("0205051R0", "ramipril"),
        ("0206020A0", "amlodipine"), ("0407020Q0", "morphine"), ("0212000B0", "atorvastatin"),
    ]  # fmt: skip
    records = [
        person(p),
        person(q),
        gp(p, date(2015, 1, 1), "52448006"),  # dementia, long ago: still "ever"
        spell(p, date(2020, 1, 1), date(2020, 1, 2), diags=["I509"]),  # heart failure (ICD)
        spell(p, date(2023, 1, 1), date(2023, 1, 2), diags=["R296"]),  # tendency to fall
        gp(p, D, "84114007"),  # on D: not counted
        *(rx(q, date(2024, 3, 1), bnf, name) for bnf, name in meds),
        rx(q, date(2024, 3, 15), "0403010A0", "sertraline"),  # repeat: still one medicine
        rx(q, date(2023, 12, 1), "0408010A0", "valproate"),  # outside 90 days
        *(gp(q, date(2022, 1, 1), code) for code in
          ("21134002", "271737000", "49436004", "404640003", "267036007", "15188001",
           "38341003", "160689007")),  # 8 deficits + polypharmacy = 9/36
    ]  # fmt: skip
    frame = _features(tmp_path, records)
    row = frame.loc[p]
    assert row["has_dementia"] == 1 and row["has_heart_failure"] == 1
    assert row["tendency_to_fall"] == 1 and row["has_stroke"] == 0
    assert row["efi"] == pytest.approx(1 / 36)  # memory deficit from the dementia code
    other = frame.loc[q]
    assert other["medicines_90d"] == 6
    assert other["frid_antidepressants_90d"] == 1
    assert other["frid_antihypertensives_90d"] == 2
    assert other["frid_opioids_90d"] == 1
    assert other["frid_antiepileptics_90d"] == 0
    assert other["frid_classes_90d"] == 4
    assert other["efi"] == pytest.approx(9 / 36)
    assert other["efi_band"] == "moderate"


def test_efi_band_boundaries(tmp_path: Path) -> None:
    deficit_codes = ["21134002", "271737000", "49436004", "404640003", "267036007",
                     "15188001", "38341003", "160689007", "13200003", "40930008",
                     "68566005", "89362005", "399912005"]  # fmt: skip
    expected = {4: "fit", 5: "mild", 8: "mild", 9: "moderate", 12: "moderate", 13: "severe"}
    records = []
    for n in expected:
        pid = f"EFI{n:03d}"
        records.append(person(pid))
        records.extend(gp(pid, date(2023, 1, 1), c) for c in deficit_codes[:n])
    frame = _features(tmp_path, records)
    for n, band in expected.items():
        assert frame.loc[f"EFI{n:03d}", "efi_band"] == band, n


def test_observations_care_and_fire(tmp_path: Path) -> None:
    p = "OBSERV"
    frame = _features(
        tmp_path,
        [
            person(p),
            gp(p, date(2022, 1, 1), "60621009", 31.0),
            gp(p, date(2023, 6, 1), "60621009", 24.5),  # latest BMI
            gp(p, D, "60621009", 40.0),  # on D: ignored
            gp(p, date(2023, 1, 1), "77176002"),  # current smoker, then ex
            gp(p, date(2023, 9, 1), "8517006"),
            gp(p, date(2023, 2, 1), "1082641000000106", 30.0),  # 30 units a week
            care(p, "home_care", date(2023, 1, 1), None, 7.5),
            care(p, "home_care", date(2023, 6, 1), D, 3.0),  # ends on D: still running
            care(p, "home_care", date(2022, 1, 1), date(2023, 1, 1), 20.0),  # ended
            care(p, "telecare", date(2020, 1, 1)),
            care(p, "reablement", date(2023, 5, 1), date(2023, 6, 1)),
            care(p, "assessment", date(2022, 5, 1), date(2022, 5, 1)),  # over a year ago
            fire(p, date(2022, 1, 1), trip_hazards=True, smoker=True),
            fire(p, date(2023, 3, 1), trip_hazards=False, smoke_alarm_working=False),
        ],
    )
    row = frame.loc[p]
    assert row["bmi"] == 24.5 and row["bmi_recorded"] == 1
    assert row["smoking_status"] == "ex"
    assert row["heavy_drinking"] == 1
    assert row["home_care_now"] == 1 and row["home_care_hours_now"] == 10.5
    assert row["telecare_now"] == 1 and row["reablement_365d"] == 1
    assert row["care_assessment_365d"] == 0
    assert row["fire_visited"] == 1
    assert (row["fire_trip_hazards"], row["fire_smoke_alarm_working"], row["fire_smoker"]) == (
        0, 0, 0)  # fmt: skip
    assert row["has_gp_event_730d"] == 1


@pytest.mark.slow  # features computed twice
def test_lookback_is_capped_and_never_negative(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.duckdb", [person("LOOKBK")])
    short = compute_features(store, D, data_start=date(2024, 1, 1))
    assert short.loc[0, "lookback_days"] == 91
    long = compute_features(store, D, data_start=date(2010, 1, 1))
    assert long["lookback_days"].tolist() == [730.0]


def test_missing_store_and_table_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no store"):
        compute_features(tmp_path / "absent.duckdb", D)
    import duckdb

    path = tmp_path / "partial.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(ValueError, match="no table person"):
        compute_features(path, D, data_start=START)
