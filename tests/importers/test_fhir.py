"""The FHIR importer on hand-built resources of a few people, as a Bulk Data export (gzipped
NDJSON with its manifest) and as Bundles: every mapping rule and drop reason, row by row, and
what it writes loaded by the real `carerisk load`."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from importers.extract import SourceError
from importers.fhir import import_fhir
from tests.importers.extracts import (
    dropped,
    dropped_count,
    dropped_reasons,
    loaded,
    manifest,
    rows,
    stored_rows,
)

D = date.fromisoformat
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
A, B = "alpha-001", "beta-0002"


def cc(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def patient(pid: str | None, **kw: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **({"id": pid} if pid else {}), **kw}


def encounter(eid: str, who: str, cls: str, start: str | None, end: str | None = None,
              **kw: Any) -> dict[str, Any]:  # fmt: skip
    period = {k: v for k, v in (("start", start), ("end", end or start)) if v}
    return {
        "resourceType": "Encounter", "id": eid, "status": kw.pop("status", "finished"),
        "class": {"code": cls}, "subject": {"reference": f"Patient/{who}"},
        **({"period": period} if period else {}), **kw,
    }  # fmt: skip


def condition(cid: str, who: str, code: dict[str, Any], enc: str | None = None,
              **kw: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "resourceType": "Condition", "id": cid, "code": code,
        "subject": {"reference": f"urn:uuid:{who}"},
        **({"encounter": {"reference": f"Encounter/{enc}"}} if enc else {}), **kw,
    }  # fmt: skip


def observation(oid: str, who: str, code: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": kw.pop("status", "final"),
            "code": code, "subject": {"reference": f"Patient/{who}"}, **kw}  # fmt: skip


def request(mid: str, who: str, med: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    out = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": kw.pop("status", "active"),
        "intent": kw.pop("intent", "order"),
        "subject": {"reference": f"Patient/{who}"},
        **kw,
    }
    if med is not None:
        out["medicationCodeableConcept"] = med
    return out


DAY = {"onsetDateTime": "2019-05-01T10:00:00+00:00"}
RESOURCES: list[dict[str, Any]] = [
    patient(A, gender="male", birthDate="1940-03-12", deceasedDateTime="2021-02-03T10:00:00Z"),
    patient(B, gender="female", birthDate="1945-07", deceasedBoolean=True),
    patient("gamma-003", gender="unknown", birthDate="1947-01-01"),
    patient("delta-004", gender="female", birthDate="1950"),
    patient(A, gender="male", birthDate="1940-03-12", deceasedDateTime="2021-02-04"),
    patient(None, gender="male", birthDate="1940-03-12"),
    encounter(
        "e1",
        A,
        "IMP",
        "2020-01-10T08:00:00Z",
        "2020-01-15",
        hospitalization={"admitSource": cc("x", "emd")},
    ),  # fmt: skip
    encounter("e2", A, "EMER", "2020-03-01"),
    encounter("e3", A, "IMP", "2020-03-01", "2020-03-02"),  # after the same day's EMER
    encounter("e4", B, "IMP", "2020-05-01", "2020-05-03"),
    encounter("e5", B, "AMB", "2020-05-10"),
    encounter("e6", "gamma-003", "EMER", "2020-05-10"),
    encounter("e7", A, "IMP", "2020-05-10", "2020-05-01"),
    encounter("e8", A, "IMP", "2018-01-01", "2019-06-01"),
    encounter("e9", B, "IMP", "2020-06-01", "2020-06-02"),
    encounter("e10", A, "EMER", "2020-07-01", status="entered-in-error"),
    encounter("e11", A, "EMER", None),
    encounter("e2", A, "EMER", "2020-03-01"),
    condition("c1", A, cc(SNOMED, "52448006"), **DAY),
    condition("c2", A, cc(SNOMED, "26929004"), recordedDate="2019-06-01"),
    condition("c3", A, cc(ICD10, "F03"), **DAY),
    condition("c4", "nobody-9", cc(SNOMED, "52448006"), **DAY),
    condition("c5", A, cc(SNOMED, "52448006")),
    condition(
        "c6", A, cc(SNOMED, "52448006"), verificationStatus=cc("x", "entered-in-error"), **DAY
    ),  # fmt: skip
    condition(
        "c10",
        A,
        {"coding": [{"system": SNOMED, "code": "5913000"}, {"system": ICD10, "code": "S72.0"}]},
        "e1",
        **DAY,
    ),  # fmt: skip
    condition("c11", A, cc(SNOMED, "5913000"), "e1", **DAY),
    condition("c12", A, cc(SNOMED, "52448006"), "e1", **DAY),
    condition("c13", A, cc(SNOMED, "77176002"), "e1", **DAY),
    condition("c20", A, cc(SNOMED, "1912002"), "e3", **DAY),
    condition("c30", B, cc(SNOMED, "230690007"), "e4", **DAY),
    condition("c40", A, cc(SNOMED, "5913000"), "e7", **DAY),
    condition("c50", A, cc(ICD10, "W19"), "e2", **DAY),
    condition("c51", A, cc(SNOMED, "5913000"), "e2", **DAY),
    condition("c52", A, cc(SNOMED, "65966004"), "e2", **DAY),
    condition("c60", B, cc(SNOMED, "52448006"), "e5", onsetDateTime="2020-05-10"),
    condition("c1", A, cc(SNOMED, "52448006"), **DAY),
    observation(
        "o1", A, cc(LOINC, "39156-5"), effectiveDateTime="2019-08-01", valueQuantity={"value": 27.5}
    ),  # fmt: skip
    observation(
        "o2",
        A,
        cc(LOINC, "72166-2"),
        effectiveDateTime="2019-08-02",
        valueCodeableConcept=cc(SNOMED, "8517006"),
    ),  # fmt: skip
    observation("o3", A, cc(SNOMED, "86933000"), effectivePeriod={"start": "2019-07-01"}),
    observation("o4", A, cc(LOINC, "2345-7"), effectiveDateTime="2019-08-03"),
    observation(
        "o5", A, cc(SNOMED, "86933000"), effectiveDateTime="2019-08-04", status="entered-in-error"
    ),  # fmt: skip
    observation("o6", "nobody-9", cc(SNOMED, "86933000"), effectiveDateTime="2019-08-05"),
    observation("o7", A, cc(SNOMED, "86933000")),
    observation("o1", A, cc(LOINC, "39156-5"), effectiveDateTime="2019-08-01"),
    request(
        "m1", A, cc(RXNORM, "312940", "Sertraline 50 MG Oral Tablet"), authoredOn="2019-09-01"
    ),  # fmt: skip
    request(
        "m2",
        A,
        cc(RXNORM, "1049621", "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet"),
        authoredOn="2019-09-02",
    ),  # fmt: skip
    request("m3", A, cc(RXNORM, "310965", "Ibuprofen 200 MG Oral Tablet"), authoredOn="2019-09-03"),
    request("m4", A, cc(RXNORM, "36437"), authoredOn="2019-09-04", intent="plan"),
    request("m5", A, cc(RXNORM, "36437"), authoredOn="2019-09-05", status="entered-in-error"),
    request("m6", "nobody-9", cc(RXNORM, "36437"), authoredOn="2019-09-06"),
    request("m7", A, cc(RXNORM, "36437")),
    request("m8", A, None, authoredOn="2019-09-08"),
    request(
        "m9", B, None, authoredOn="2019-09-09", medicationReference={"reference": "Medication/med1"}
    ),  # fmt: skip
    {"resourceType": "Medication", "id": "med1", "code": cc(RXNORM, "36437", "sertraline")},
    {
        "resourceType": "MedicationStatement",
        "id": "s1",
        "status": "active",
        "medicationCodeableConcept": {"text": "Zopiclone 7.5mg tablets"},
        "subject": {"reference": f"Patient/{B}"},
        "effectiveDateTime": "2019-10-01",
    },  # fmt: skip
    {"resourceType": "Procedure", "id": "p1", "subject": {"reference": f"Patient/{A}"}},
]


def bulk_export(folder: Path, resources: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    output = []
    for kind, lines in by_type.items():
        with gzip.open(folder / f"{kind}.ndjson.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
        output.append({"type": kind, "url": f"https://example.org/out/{kind}.ndjson.gz"})
    manifest = {"transactionTime": "2021-06-30T12:00:00Z", "output": output, "error": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def bundles(folder: Path, resources: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": r} for r in resources]}  # fmt: skip
    (folder / "all.json").write_text(json.dumps(bundle, indent=2))
    return folder


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fhir")
    import_fhir(bulk_export(root / "export", RESOURCES), root / "extract")
    return root / "extract"


def reasons(extract: Path, source: str) -> list[str]:
    """The distinct drop reasons of a source, sorted."""
    return sorted(set(dropped_reasons(extract, source)))


def test_patients_and_deaths(extract: Path) -> None:
    assert rows(extract, "person", ["person_id", "birth_month", "sex"]) == [
        (A, D("1940-03-01"), "M"),
        (B, D("1945-07-01"), "F"),
    ]
    assert rows(extract, "death") == [(A, D("2021-02-03"))]
    assert reasons(extract, "Patient") == [
        "Patient.birthDate has no year and month",
        "Patient.gender is neither male nor female",
        "Patient.id is missing",
        "Patient.id repeats an earlier Patient",
    ]
    where = dropped(extract, "Patient")  # the file and line of each dropped resource
    assert where["Patient.ndjson.gz:3"] == "Patient.gender is neither male nor female"
    assert where["Patient.ndjson.gz:6"] == "Patient.id is missing"
    assert reasons(extract, "Patient.deceased") == [
        "Patient.deceasedBoolean true with no deceasedDateTime",
        "the Patient was not written",
    ]


def test_gp_events(extract: Path) -> None:
    got = rows(extract, "gp_event", ["person_id", "event_date", "snomed_code", "value"])
    assert got == [
        (A, D("2019-05-01"), "52448006", None),
        (A, D("2019-06-01"), "26929004", None),
        (A, D("2019-07-01"), "86933000", None),
        (A, D("2019-08-01"), "60621009", 27.5),
        (A, D("2019-08-02"), "8517006", None),
        (B, D("2020-05-10"), "52448006", None),
    ]
    assert reasons(extract, "Observation") == [
        "Observation has no effective or issued date",
        "Observation.id repeats an earlier Observation",
        "Observation.status is entered-in-error",
        "no SNOMED CT code (a SNOMED CT coding, the LOINC map or its value)",
        "person not among the persons written",
    ]


def test_spells_and_attendances(extract: Path) -> None:
    cols = ["person_id", "admission_date", "discharge_date", "admission_method", "diag_01",
            "diag_02", "diag_03"]  # fmt: skip
    assert rows(extract, "hospital_episode", cols) == [
        (A, D("2020-01-10"), D("2020-01-15"), "emergency", "S720", "F03", None),
        (A, D("2020-03-01"), D("2020-03-02"), "emergency", "W19", None, None),
        (B, D("2020-05-01"), D("2020-05-03"), "elective", "I64", None, None),
    ]
    cols = ["person_id", "arrival_date", "diagnosis_code", "injury_cause", "disposal"]
    assert rows(extract, "ae_attendance", cols) == [(A, D("2020-03-01"), "S720", "W19", None)]
    assert reasons(extract, "Encounter") == [
        "Encounter.class is neither IMP nor EMER",
        "Encounter.id repeats an earlier Encounter",
        "Encounter.period.end before its start",
        "Encounter.period.start is missing or not a date",
        "Encounter.status is entered-in-error",
        "no ICD-10 diagnosis on the spell",
        "person not among the persons written",
        "stay of more than 365 days: not a hospital spell",
    ]
    assert reasons(extract, "Condition") == [
        "Condition has no onset or recorded date",
        "Condition.code has no SNOMED CT coding",
        "Condition.id repeats an earlier Condition",
        "Condition.verificationStatus is entered-in-error",
        "beyond the attendance's one diagnosis and one external cause",
        "its Encounter was not written",
        "no ICD-10 code (an ICD-10 coding or the SNOMED CT map)",
        "person not among the persons written",
        "the same ICD-10 code is already on the Encounter",
    ]


def test_prescriptions(extract: Path) -> None:
    got = rows(extract, "prescription", ["person_id", "issue_date", "bnf_code", "medicine"])
    assert got == [
        (A, D("2019-09-01"), "0403030Q0", "sertraline"),
        (A, D("2019-09-02"), "040702", "oxycodone"),
        (B, D("2019-09-09"), "0403030Q0", "sertraline"),
        (B, D("2019-10-01"), "0401010Z0", "zopiclone"),
    ]
    assert reasons(extract, "MedicationRequest") == [
        "MedicationRequest has no date",
        "MedicationRequest names no medication",
        "MedicationRequest.intent is not an order",
        "MedicationRequest.status is entered-in-error",
        "medication not in the RxNorm to BNF map",
        "person not among the persons written",
    ]


def test_row_ids_are_the_resource_ids(extract: Path) -> None:
    """Stable from one export to the next: a later full load finds the same rows."""
    assert rows(extract, "hospital_episode", ["episode_id"]) == [("ee1",), ("ee3",), ("ee4",)]
    assert rows(extract, "ae_attendance", ["attendance_id"]) == [("ee2",)]
    ids = rows(extract, "prescription", ["prescription_id"])
    assert ids == [
        ("mss1",), ("rxm1",), ("rxm2",), ("rxm9",)
    ]  # fmt: skip
    gp = {r[0] for r in rows(extract, "gp_event", ["event_id"])}
    assert gp == {"cc1", "cc2", "cc60", "oo1", "oo2", "oo3"}


def test_manifest_and_coverage(extract: Path) -> None:
    m = manifest(extract)
    assert m["extract_date"] == "2021-06-30"
    cover = m["coverage"]
    assert cover["source"]["kind"] == "fhir" and cover["source"]["form"] == "bulk"
    absent = [n for n, t in cover["tables"].items() if t["state"] == "absent"]
    assert absent == ["ambulance_incident", "social_care", "fire_home_visit"]
    counted = {"Patient": 6, "Condition": 18, "Observation": 8, "MedicationRequest": 9,
               "MedicationStatement": 1, "Encounter": 12, "Patient.deceased": 3}  # fmt: skip
    for source, counts in cover["sources"].items():
        assert counts["read"] == counted[source], source
        assert counts["read"] == counts["written"] + sum(counts["dropped"].values()), source
        assert sum(counts["dropped"].values()) == dropped_count(extract, source), source


def test_the_load_takes_every_row_written(extract: Path, tmp_path: Path) -> None:
    store = loaded(extract, tmp_path)
    assert len(stored_rows(store, "person")) == len(rows(extract, "person")) > 0
    for name in ("ambulance_incident", "social_care", "fire_home_visit"):
        assert stored_rows(store, name) == []


def test_bundles_give_the_same_extract(extract: Path, tmp_path: Path) -> None:
    import_fhir(bundles(tmp_path / "bundles", RESOURCES), tmp_path / "out")
    for table in ("person", "death"):
        assert rows(tmp_path / "out", table) == rows(extract, table)
    for table, cols in (
        ("gp_event", ["person_id", "event_date", "snomed_code", "value"]),
        ("prescription", ["person_id", "issue_date", "bnf_code", "medicine"]),
        ("hospital_episode", ["person_id", "admission_date", "diag_01", "diag_02"]),
        ("ae_attendance", ["person_id", "arrival_date", "diagnosis_code", "injury_cause"]),
    ):
        assert rows(tmp_path / "out", table, cols) == rows(extract, table, cols)
    assert manifest(tmp_path / "out")["coverage"]["source"]["form"] == "bundles"
    assert dropped(tmp_path / "out", "Patient")["all.json entry 3"] == (
        "Patient.gender is neither male nor female"
    )
    loaded(tmp_path / "out", tmp_path / "home")


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "p-000001"}\n{oops\n')
    with pytest.raises(SourceError, match="Patient.ndjson"):
        import_fhir(folder, tmp_path / "out")
    export = bulk_export(tmp_path / "export", RESOURCES[:2])
    (export / "Patient.ndjson.gz").unlink()
    with pytest.raises(SourceError, match=r"output\[0\] file Patient.ndjson.gz is missing"):
        import_fhir(export, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no NDJSON files and no Bundle files"):
        import_fhir(tmp_path / "empty", tmp_path / "out")
