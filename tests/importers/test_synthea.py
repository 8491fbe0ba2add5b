"""The PySynthea fixture (40 people aged 60-100, FHIR R4 Bulk Data NDJSON, made by
fhir/make_fixture.py): imported, loaded by the real `carerisk load` (rows reconciled per
resource type), then features from the store, against counts taken here straight from the
JSON."""

from __future__ import annotations

import functools
import gzip
import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from importers.fhir import import_fhir
from tests.importers.extracts import (
    assert_missing_for_everyone,
    features_of,
    load,
    loaded,
    manifest,
    reconcile,
    rows,
)

FIXTURE = Path(__file__).parent / "fhir" / "synthea40"
DAY = date(2020, 1, 1)


@functools.cache
def resources(kind: str) -> list[dict[str, Any]]:
    with gzip.open(FIXTURE / f"{kind}.ndjson.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def day_of(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def subject(resource: dict[str, Any]) -> str:
    return str(resource["subject"]["reference"]).rsplit(":", 1)[-1].rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthea") / "extract"
    import_fhir(FIXTURE, out)
    return out


@pytest.fixture(scope="module")
def store(extract: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return loaded(extract, tmp_path_factory.mktemp("synthea_home"))


def test_rows_read_match_the_files(extract: Path) -> None:
    sources = manifest(extract)["coverage"]["sources"]
    for kind in ("Patient", "Condition", "Observation", "MedicationRequest", "Encounter"):
        assert sources[kind]["read"] == len(resources(kind)), kind
        counts = sources[kind]
        assert counts["read"] == counts["written"] + sum(counts["dropped"].values())
    assert "MedicationStatement" not in sources  # the export has none


def test_the_load_takes_every_row_written(extract: Path, tmp_path: Path) -> None:
    report = load(extract, tmp_path)
    reconcile(extract, report)
    loaded_rows = {t["table"]: t["rows_loaded"] for t in report["tables"]}
    assert loaded_rows["person"] == len(resources("Patient"))
    deaths = [p for p in resources("Patient") if p.get("deceasedDateTime")]
    assert loaded_rows["death"] == len(deaths)
    emer = [e for e in resources("Encounter") if e["class"]["code"] == "EMER"]
    assert loaded_rows["ae_attendance"] == len(emer)
    assert sorted(report["coverage"]["absent"]) == [
        "ambulance_incident", "fire_home_visit", "social_care"
    ]  # fmt: skip


def test_people_deaths_and_attendances(extract: Path) -> None:
    patients = resources("Patient")
    assert len(rows(extract, "person")) == len(patients) == 40
    deaths = sorted((p["id"], day_of(p["deceasedDateTime"])) for p in patients
                    if p.get("deceasedDateTime"))  # fmt: skip
    assert rows(extract, "death") == deaths
    emer = [e for e in resources("Encounter") if e["class"]["code"] == "EMER"]
    assert len(rows(extract, "ae_attendance")) == len(emer)


def test_gp_entries(extract: Path) -> None:
    """Conditions not on an IMP or EMER encounter, and SNOMED or BMI observations."""
    hospital = {e["id"] for e in resources("Encounter") if e["class"]["code"] in ("IMP", "EMER")}
    gp_conditions = [
        c for c in resources("Condition")
        if str(c.get("encounter", {}).get("reference", "")).rsplit(":", 1)[-1] not in hospital
    ]  # fmt: skip
    bmi = [o for o in resources("Observation")
           if o["code"]["coding"][0]["code"] == "39156-5"]  # fmt: skip
    written = Counter(code for (code,) in rows(extract, "gp_event", ["snomed_code"]))
    assert written["60621009"] == len(bmi)
    snomed_conditions = Counter(c["code"]["coding"][0]["code"] for c in gp_conditions)
    for code, n in snomed_conditions.items():
        assert written[code] >= n, code


def test_features(store: Path) -> None:
    frame = features_of(store, DAY).set_index("person_id")
    assert assert_missing_for_everyone(frame, store)
    patients = resources("Patient")
    alive = {
        p["id"] for p in patients
        if day_of(p["birthDate"]) < DAY  # type: ignore[operator]
        and (not p.get("deceasedDateTime") or day_of(p["deceasedDateTime"]) >= DAY)  # type: ignore[operator]
    }  # fmt: skip
    assert set(frame.index) == alive
    since = DAY - timedelta(days=365)
    emer = Counter(
        subject(e) for e in resources("Encounter")
        if e["class"]["code"] == "EMER" and since <= day_of(e["period"]["start"]) < DAY  # type: ignore[operator]
    )  # fmt: skip
    got = frame["ae_attendances_365d"]
    assert {p: int(got[p]) for p in alive if got[p]} == {
        p: n for p, n in emer.items() if p in alive
    }
    with_bmi = {
        subject(o) for o in resources("Observation")
        if o["code"]["coding"][0]["code"] == "39156-5"
        and day_of(o.get("effectiveDateTime")) < DAY  # type: ignore[operator]
    }  # fmt: skip
    assert set(frame.index[frame["bmi"].notna()]) == with_bmi & alive
