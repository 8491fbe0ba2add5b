"""Store fixtures: a small valid extract of all nine contract tables, and its writer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

EXTRACT_DATE = date(2024, 6, 30)
ExtractWriter = Callable[..., Path]


def _dates(*values: str | None) -> pd.Series:
    return pd.Series(list(values), dtype=object).astype("datetime64[us]")


def small_extract() -> dict[str, pd.DataFrame]:
    """Five people, a death and a few rows in every table; passes the contract."""
    pids = [f"P0000{i}" for i in range(1, 6)]
    return {
        "person": pd.DataFrame(
            {
                "person_id": pids,
                "birth_month": _dates(
                    "1940-01-01", "1950-06-01", "1935-03-01", "1980-12-01", "1929-07-01"
                ),
                "sex": ["F", "M", "F", "M", "F"],
                "ethnicity": ["white", None, "asian", "black", "white"],
                "lsoa_code": ["E01000001", "E01000002", "E01000003", "W01000004", "E01000005"],
                "imd_decile": pd.array([1, 5, 10, 3, 7], dtype="Int64"),
                "district": ["Wyre Forest", "Malvern Hills", "Worcester", "Wychavon", "Redditch"],
                "practice_code": ["M81001", "M81002", "M81001", "M81003", "M81002"],
                "gp_system": ["EMIS", "SystmOne", "EMIS", "Vision", "Other"],
                "lives_alone": pd.array([True, False, None, False, True], dtype="boolean"),
                "informal_carer": pd.array([False, True, True, None, False], dtype="boolean"),
            }
        ),
        "death": pd.DataFrame({"person_id": ["P00005"], "date_of_death": _dates("2024-03-01")}),
        "gp_event": pd.DataFrame(
            {
                "event_id": ["G1", "G2", "G3", "G4"],
                "person_id": ["P00001", "P00001", "P00002", "P00005"],
                "event_date": _dates("2023-01-10", "2023-05-02", "2022-11-30", "2024-02-01"),
                "snomed_code": ["1912002", "60621009", "52448006", "161898004"],
                "value": pd.array([None, 27.5, None, None], dtype="Float64"),
            }
        ),
        "prescription": pd.DataFrame(
            {
                "prescription_id": ["R1", "R2", "R3"],
                "person_id": ["P00001", "P00003", "P00003"],
                "issue_date": _dates("2023-02-01", "2023-03-01", "2024-01-15"),
                "bnf_code": ["040301", "0402010AB", "020201"],
                "medicine": ["amitriptyline", "quetiapine", "bendroflumethiazide"],
            }
        ),
        "hospital_episode": pd.DataFrame(
            {
                "episode_id": ["H1", "H2"],
                "person_id": ["P00001", "P00003"],
                "admission_date": _dates("2023-06-01", "2024-06-20"),
                "discharge_date": _dates("2023-06-10", None),
                "admission_method": ["emergency", "elective"],
                "main_specialty": ["110", "300"],
                "diag_01": ["S720", "I50"],
                "diag_02": ["W19X", None],
                **{f"diag_0{n}": [None, None] for n in range(3, 7)},
            }
        ),
        "ae_attendance": pd.DataFrame(
            {
                "attendance_id": ["A1", "A2"],
                "person_id": ["P00001", "P00004"],
                "arrival_date": _dates("2023-06-01", "2023-09-09"),
                "diagnosis_code": ["S720", None],
                "injury_cause": ["W19X", None],
                "disposal": ["admitted", "discharged"],
            }
        ),
        "ambulance_incident": pd.DataFrame(
            {
                "incident_id": ["I1", "I2"],
                "person_id": ["P00001", "P00002"],
                "incident_date": _dates("2023-06-01", "2023-12-24"),
                "category": ["fall", "long_lie"],
                "conveyed": [True, False],
            }
        ),
        "social_care": pd.DataFrame(
            {
                "service_id": ["C1", "C2"],
                "person_id": ["P00003", "P00005"],
                "service_type": ["home_care", "assessment"],
                "start_date": _dates("2023-07-01", "2023-10-01"),
                "end_date": _dates(None, "2023-10-02"),
                "hours_per_week": pd.array([14.0, None], dtype="Float64"),
            }
        ),
        "fire_home_visit": pd.DataFrame(
            {
                "visit_id": ["F1", "F2"],
                "person_id": ["P00001", "P00004"],
                "visit_date": _dates("2023-04-04", "2024-01-20"),
                "trip_hazards": [True, False],
                "smoke_alarm_working": [True, True],
                "smoker": [False, True],
                "mobility_concern": [True, False],
                "referral_made": [False, False],
            }
        ),
    }


def write_extract(
    folder: Path,
    tables: dict[str, pd.DataFrame],
    fmt: str = "parquet",
    manifest: bool = True,
    kind: str | None = "full",
) -> Path:
    """Write one file per table (`parquet` or `csv`) and a manifest with the extract date and
    its kind (full unless told; None leaves the kind out)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "parquet":
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{name}.csv", index=False, date_format="%Y-%m-%d")
    if manifest:
        stated = {"extract_date": str(EXTRACT_DATE), **({"kind": kind} if kind else {})}
        (folder / "manifest.json").write_text(json.dumps(stated))
    return folder


@pytest.fixture
def clean_tables() -> dict[str, pd.DataFrame]:
    return small_extract()


@pytest.fixture
def make_extract(tmp_path: Path) -> ExtractWriter:
    """Write `tables` (default: the clean small extract) under tmp_path/<name>."""

    def make(
        tables: dict[str, pd.DataFrame] | None = None, fmt: str = "parquet", name: str = "extract"
    ) -> Path:
        return write_extract(tmp_path / name, small_extract() if tables is None else tables, fmt)

    return make
