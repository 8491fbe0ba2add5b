"""`carerisk import fhir`: a FHIR R4 Bulk Data export (NDJSON per type, optionally gzipped,
with its manifest) or a folder of Bundles to a contract extract, with DuckDB's JSON reader.

Resources are read as JSON objects (`read_ndjson_objects`, or the entries of each Bundle) and
every field is taken with `json_extract`: a field absent from a file is NULL, never an error.
- Patient: sex from gender, month of birth from birthDate; deceasedDateTime is the death;
- Condition: on an IMP or EMER Encounter a hospital diagnosis (an ICD-10 coding, else the
  SNOMED CT -> ICD-10 map), otherwise a GP record entry (its SNOMED CT coding);
- Observation: a GP record entry (SNOMED CT, LOINC BMI to its SNOMED observable, or a
  SNOMED CT value such as a smoking status);
- MedicationRequest, MedicationStatement: the RxNorm ingredient, by code or by name, through
  the RxNorm -> BNF map;
- Encounter: class IMP a spell, class EMER an attendance.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from features.store_sql import literal
from importers import codes
from importers.extract import Coverage, Plan, SourceError, absent, cand, dates_of, write_extract
from importers.sql import NO_PERSON, prepare

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10_SYSTEMS = "http://hl7.org/fhir/sid/icd-10%"  # WHO ICD-10, ICD-10-CM and national editions
TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "Encounter",
)
LONGEST_SPELL_DAYS = 365
ORDER_INTENTS = ("order", "original-order", "reflex-order", "filler-order", "instance-order")
NOT_HELD = {
    "ambulance_incident": "FHIR R4 resources hold no ambulance call-outs",
    "social_care": "FHIR R4 resources hold no adult social care",
    "fire_home_visit": "FHIR R4 resources hold no fire and rescue home visits",
}
ID_PREFIX = {"MedicationRequest": "rx", "MedicationStatement": "ms"}  # prescription ids
MAX_OBJECT = 1 << 30  # a Bundle is one JSON object: allow large ones


def import_fhir(source: Path, out_dir: Path, *, extract_date: date | None = None) -> dict[str, Any]:
    """Read the export or Bundles in `source` and write the contract extract into `out_dir`;
    returns the manifest written."""
    source = Path(source)
    if not source.is_dir():
        raise SourceError(f"FHIR source {source}: not a folder")
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    try:
        form, when = _read_resources(con, source)
        versions = prepare(con)
        _macros(con)
        _patients(con)
        _encounters(con)
        _conditions(con)
        _encounters_final(con)
        _observations(con)
        _medications(con)
        plan = _plan(con, source, form, versions, extract_date or when)
        return write_extract(con, plan, Path(out_dir))
    finally:
        con.close()


# --- reading ---------------------------------------------------------------------------------


def _read_resources(con: duckdb.DuckDBPyConnection, folder: Path) -> tuple[str, date | None]:
    """Table `res` (type, id, r, at): every resource, with its file and line (or entry)."""
    manifest = _bulk_manifest(folder)
    ndjson = _ndjson_files(folder, manifest)
    if ndjson:
        parts = [
            f"SELECT json AS r, {literal(p.name)} || ':' || CAST(row_number() OVER () AS VARCHAR)"
            f" AS loc FROM read_ndjson_objects({literal(p)}, maximum_object_size = {MAX_OBJECT})"
            for p in ndjson
        ]
        form = "bulk"
    else:
        bundles = sorted(
            p for p in folder.iterdir() if p.suffix == ".json" and p != folder / "manifest.json"
        )
        if not bundles:
            raise SourceError(f"FHIR source {folder}: no NDJSON files and no Bundle files")
        parts = [
            f"SELECT unnest(CAST(json_extract(json, '$.entry[*].resource') AS JSON[])) AS r, "
            f"{literal(p.name)} || ' entry ' AS loc FROM read_json_objects({literal(p)}, "
            f"format = 'auto', maximum_object_size = {MAX_OBJECT})"
            for p in bundles
        ]
        form = "bundles"
    query = " UNION ALL ".join(f"({p})" for p in parts)
    try:
        con.execute(
            "CREATE TABLE res AS SELECT json_extract_string(r, '$.resourceType') AS type, "
            f"json_extract_string(r, '$.id') AS id, r, loc FROM ({query})"
        )
    except duckdb.Error as err:
        raise SourceError(f"FHIR source {folder}: {str(err).splitlines()[0]}") from err
    if form == "bundles":
        con.execute(
            "CREATE OR REPLACE TABLE res AS SELECT type, id, r, loc || CAST(row_number() OVER "
            "(PARTITION BY loc) AS VARCHAR) AS loc FROM res"
        )
    return form, _transaction_day(manifest)


def _bulk_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"FHIR source {path}: not JSON ({err})") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
        raise SourceError(f"FHIR source {path}: a Bulk Data manifest needs an output list")
    return manifest


def _ndjson_files(folder: Path, manifest: dict[str, Any] | None) -> list[Path]:
    """The manifest's output files of the types read, else every *.ndjson(.gz) in the folder."""
    if manifest is None:
        return sorted(p for p in folder.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
    files = []
    for n, entry in enumerate(manifest["output"]):
        if not isinstance(entry, dict) or "url" not in entry:
            raise SourceError(f"FHIR source {folder}/manifest.json: output[{n}] has no url")
        if entry.get("type") in TYPES or entry.get("type") == "Medication":
            path = folder / Path(str(entry["url"])).name
            if not path.exists():
                raise SourceError(
                    f"FHIR source {folder}/manifest.json: output[{n}] file {path.name} is missing"
                )
            files.append(path)
    return files


def _transaction_day(manifest: dict[str, Any] | None) -> date | None:
    text = str((manifest or {}).get("transactionTime") or "")[:10]
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


# --- mapping ---------------------------------------------------------------------------------


def _macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        # the code of the first coding of a CodeableConcept at `path` whose system is `sys`
        "CREATE MACRO coding(r, path, sys) AS json_extract_string(list_filter("
        "CAST(json_extract(r, path || '.coding') AS JSON[]), "
        "lambda c: json_extract_string(c, '$.system') LIKE sys)[1], '$.code')"
    )
    con.execute("CREATE MACRO day_of(t) AS TRY_CAST(left(t, 10) AS DATE)")
    con.execute(
        # the id a reference points at: the last segment of "Patient/x", "urn:uuid:x" or a URL
        "CREATE MACRO ref_id(r, path) AS regexp_extract(json_extract_string(r, path), "
        "'([^/:]+)$', 1)"
    )
    con.execute("CREATE MACRO field(r, path) AS json_extract_string(r, path)")
    con.execute(
        # a contract row id: the resource id behind a prefix when it fits the id pattern, else
        # a digest of the resource's place in the export
        "CREATE MACRO row_id(prefix, id, loc) AS prefix || CASE WHEN "
        "regexp_full_match(coalesce(id, ''), '[A-Za-z0-9_-]{1,60}') THEN id "
        "ELSE md5(loc)[:16] END"
    )


def _of_type(kind: str, extra: str = "") -> str:
    return (
        f"SELECT *, row_number() OVER (PARTITION BY id ORDER BY loc) AS nth{extra} "
        f"FROM res WHERE type = '{kind}'"
    )


def _patients(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE TABLE {cand("Patient")} AS
        WITH p AS ({_of_type("Patient")})
        SELECT loc AS src_row, id AS person_id,
            CASE
                WHEN id IS NULL OR trim(id) = '' THEN 'Patient.id is missing'
                WHEN nth > 1 THEN 'Patient.id repeats an earlier Patient'
                WHEN coalesce(field(r, '$.gender'), '') NOT IN ('male', 'female')
                    THEN 'Patient.gender is neither male nor female'
                WHEN TRY_CAST(left(field(r, '$.birthDate'), 7) || '-01' AS DATE) IS NULL
                    THEN 'Patient.birthDate has no year and month'
            END AS reason,
            TRY_CAST(left(field(r, '$.birthDate'), 7) || '-01' AS DATE) AS birth_month,
            CASE field(r, '$.gender') WHEN 'male' THEN 'M' WHEN 'female' THEN 'F' END AS sex,
            field(r, '$.deceasedDateTime') AS died_text,
            coalesce(TRY_CAST(field(r, '$.deceasedBoolean') AS BOOLEAN), false) AS died_flag
        FROM p
        """
    )
    con.execute(
        f"CREATE TABLE persons AS SELECT person_id FROM {cand('Patient')} WHERE reason IS NULL"
    )
    con.execute(
        f"""
        CREATE TABLE {cand("Patient.deceased")} AS
        SELECT src_row, person_id, day_of(died_text) AS date_of_death,
            CASE
                WHEN reason IS NOT NULL THEN 'the Patient was not written'
                WHEN day_of(died_text) IS NULL
                    THEN 'Patient.deceasedBoolean true with no deceasedDateTime'
            END AS reason
        FROM {cand("Patient")} WHERE died_text IS NOT NULL OR died_flag
        """
    )


def _encounters(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE TABLE enc_base AS
        WITH e AS ({_of_type("Encounter")}), b AS (
            SELECT e.*, pe.person_id, field(r, '$.class.code') AS cls,
                day_of(field(r, '$.period.start')) AS start_date,
                day_of(field(r, '$.period.end')) AS end_date,
                field(r, '$.status') AS status
            FROM e LEFT JOIN persons pe ON pe.person_id = ref_id(r, '$.subject.reference')
        ), er AS (SELECT DISTINCT person_id, start_date AS day FROM b WHERE cls = 'EMER')
        SELECT loc AS src_row, id AS eid, person_id, start_date, end_date,
            CASE cls WHEN 'IMP' THEN 'spell' WHEN 'EMER' THEN 'attendance' END AS target,
            CASE
                WHEN coding(r, '$.hospitalization.admitSource', '%') = 'emd'
                    OR coding(r, '$.priority', '%') IN ('EM', 'UR') THEN 'emergency'
                WHEN EXISTS (SELECT 1 FROM er WHERE er.person_id = b.person_id
                    AND er.day BETWEEN b.start_date - 1 AND b.start_date) THEN 'emergency'
                ELSE 'elective'
            END AS method,
            CASE
                WHEN id IS NULL THEN 'Encounter.id is missing'
                WHEN nth > 1 THEN 'Encounter.id repeats an earlier Encounter'
                WHEN coalesce(cls, '') NOT IN ('IMP', 'EMER')
                    THEN 'Encounter.class is neither IMP nor EMER'
                WHEN status = 'entered-in-error' THEN 'Encounter.status is entered-in-error'
                WHEN person_id IS NULL THEN '{NO_PERSON}'
                WHEN start_date IS NULL THEN 'Encounter.period.start is missing or not a date'
                WHEN end_date < start_date THEN 'Encounter.period.end before its start'
                WHEN cls = 'IMP' AND end_date - start_date > {LONGEST_SPELL_DAYS}
                    THEN 'stay of more than {LONGEST_SPELL_DAYS} days: not a hospital spell'
            END AS reason
        FROM b
        """
    )


def _conditions(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE TABLE cond_base AS
        WITH c AS ({_of_type("Condition")}), visits AS (
            SELECT eid, any_value(target) AS target, bool_or(reason IS NULL) AS ok
            FROM enc_base WHERE target IS NOT NULL AND eid IS NOT NULL GROUP BY eid
        ), b AS (
            SELECT c.id, c.loc, c.nth, pe.person_id, v.eid, v.target, v.ok,
                coalesce(day_of(field(r, '$.onsetDateTime')),
                    day_of(field(r, '$.onsetPeriod.start')),
                    day_of(field(r, '$.recordedDate'))) AS day,
                snomed_of(coding(r, '$.code', '{SNOMED}')) AS snomed,
                icd10_of(coding(r, '$.code', '{ICD10_SYSTEMS}')) AS coded_icd10,
                coding(r, '$.verificationStatus', '%') AS verification
            FROM c
            LEFT JOIN persons pe ON pe.person_id = ref_id(r, '$.subject.reference')
            LEFT JOIN visits v ON v.eid = ref_id(r, '$.encounter.reference')
        )
        SELECT b.*, coalesce(b.coded_icd10, m.icd10_code) AS icd10,
            CASE
                WHEN b.nth > 1 AND b.id IS NOT NULL THEN 'Condition.id repeats an earlier Condition'
                WHEN b.verification IN ('entered-in-error', 'refuted')
                    THEN 'Condition.verificationStatus is ' || b.verification
                WHEN b.person_id IS NULL THEN '{NO_PERSON}'
                WHEN b.day IS NULL THEN 'Condition has no onset or recorded date'
                WHEN b.target IS NOT NULL AND NOT b.ok THEN 'its Encounter was not written'
                WHEN b.target IS NOT NULL AND coalesce(b.coded_icd10, m.icd10_code) IS NULL
                    THEN 'no ICD-10 code (an ICD-10 coding or the SNOMED CT map)'
                WHEN b.target IS NULL AND b.snomed IS NULL
                    THEN 'Condition.code has no SNOMED CT coding'
            END AS early
        FROM b LEFT JOIN snomed_icd10 m ON m.snomed_code = b.snomed
        """
    )
    con.execute(
        """
        CREATE TABLE cond_diag AS
        WITH e AS (
            SELECT loc, eid, target, icd10,
                row_number() OVER (PARTITION BY eid, icd10 ORDER BY loc) AS same
            FROM cond_base WHERE early IS NULL AND target IS NOT NULL
        )
        SELECT loc, is_external(icd10) AS external,
            row_number() OVER (
                PARTITION BY eid, CASE WHEN target = 'attendance' THEN is_external(icd10) END
                ORDER BY loc
            ) AS pos
        FROM e WHERE same = 1
        """
    )
    con.execute(
        f"""
        CREATE TABLE {cand("Condition")} AS
        SELECT b.loc AS src_row, b.loc, b.id, b.person_id, b.day, b.snomed, b.icd10, b.eid,
            b.target, d.pos, d.external,
            coalesce(b.early, CASE
                WHEN b.target IS NULL THEN NULL
                WHEN d.loc IS NULL THEN 'the same ICD-10 code is already on the Encounter'
                WHEN b.target = 'spell' AND d.pos > 6 THEN 'beyond the sixth diagnosis of the spell'
                WHEN b.target = 'attendance' AND d.pos > 1
                    THEN 'beyond the attendance''s one diagnosis and one external cause'
            END) AS reason
        FROM cond_base b LEFT JOIN cond_diag d ON d.loc = b.loc
        """
    )


def _encounters_final(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE TABLE {cand("Encounter")} AS
        SELECT e.src_row, e.eid, e.person_id, e.start_date, e.end_date, e.target, e.method,
            coalesce(e.reason, CASE WHEN e.target = 'spell' AND d.eid IS NULL
                THEN 'no ICD-10 diagnosis on the spell' END) AS reason
        FROM enc_base e
        LEFT JOIN (
            SELECT DISTINCT eid FROM {cand("Condition")} WHERE reason IS NULL AND eid IS NOT NULL
        ) d ON d.eid = e.eid
        """
    )


def _observations(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE TABLE {cand("Observation")} AS
        WITH o AS ({_of_type("Observation")}), b AS (
            SELECT o.*, pe.person_id AS pid, coalesce(
                snomed_of(coding(r, '$.code', '{SNOMED}')), l.snomed_code,
                snomed_of(coding(r, '$.valueCodeableConcept', '{SNOMED}'))) AS code,
                coalesce(day_of(field(r, '$.effectiveDateTime')),
                    day_of(field(r, '$.effectivePeriod.start')),
                    day_of(field(r, '$.issued'))) AS day
            FROM o
            LEFT JOIN persons pe ON pe.person_id = ref_id(r, '$.subject.reference')
            LEFT JOIN map_loinc_snomed l ON l.loinc_code = coding(r, '$.code', '{LOINC}')
        )
        SELECT loc AS src_row,
            CASE
                WHEN nth > 1 AND id IS NOT NULL THEN 'Observation.id repeats an earlier Observation'
                WHEN field(r, '$.status') = 'entered-in-error'
                    THEN 'Observation.status is entered-in-error'
                WHEN pid IS NULL THEN '{NO_PERSON}'
                WHEN day IS NULL THEN 'Observation has no effective or issued date'
                WHEN code IS NULL
                    THEN 'no SNOMED CT code (a SNOMED CT coding, the LOINC map or its value)'
            END AS reason,
            row_id('o', id, loc) AS event_id, pid AS person_id, day AS event_date,
            code AS snomed_code, TRY_CAST(field(r, '$.valueQuantity.value') AS DOUBLE) AS value
        FROM b
        """
    )


def _medications(con: duckdb.DuckDBPyConnection) -> None:
    """MedicationRequest and MedicationStatement: the RxNorm code (of the resource or of the
    Medication it refers to) in the map, else an ingredient of the map named in its text."""
    con.execute(
        f"""
        CREATE TABLE meds AS
        SELECT id AS mid, coding(r, '$.code', '{RXNORM}') AS code,
            lower(coalesce(json_extract_string(r, '$.code.coding[0].display'),
                field(r, '$.code.text'))) AS text
        FROM res WHERE type = 'Medication'
        """
    )
    for kind, dated in (
        ("MedicationRequest", "day_of(field(r, '$.authoredOn'))"),
        (
            "MedicationStatement",
            "coalesce(day_of(field(r, '$.effectiveDateTime')), "
            "day_of(field(r, '$.effectivePeriod.start')), day_of(field(r, '$.dateAsserted')))",
        ),
    ):
        _medication(con, kind, dated)


def _medication(con: duckdb.DuckDBPyConnection, kind: str, dated: str) -> None:
    intent = (
        "WHEN coalesce(field(r, '$.intent'), 'order') NOT IN ("
        + ", ".join(literal(i) for i in ORDER_INTENTS)
        + f") THEN '{kind}.intent is not an order'"
        if kind == "MedicationRequest"
        else ""
    )
    con.execute(
        f"""
        CREATE TABLE {cand(kind)} AS
        WITH m AS ({_of_type(kind)}), b AS (
            SELECT m.*, pe.person_id AS pid, {dated} AS day,
                coalesce(coding(r, '$.medicationCodeableConcept', '{RXNORM}'), md.code) AS code,
                coalesce(lower(coalesce(
                    json_extract_string(r, '$.medicationCodeableConcept.coding[0].display'),
                    field(r, '$.medicationCodeableConcept.text'))), md.text) AS text
            FROM m
            LEFT JOIN persons pe ON pe.person_id = ref_id(r, '$.subject.reference')
            LEFT JOIN meds md ON md.mid = ref_id(r, '$.medicationReference.reference')
        ), chosen AS (
            SELECT b.loc, arg_min(x.bnf_code, x.choice) AS bnf_code,
                arg_min(x.medicine, x.choice) AS medicine
            FROM b JOIN rxnorm_bnf x ON x.rxnorm_code = b.code
                OR regexp_matches(b.text, '\\b' || lower(x.ingredient) || '\\b')
            GROUP BY b.loc
        )
        SELECT b.loc AS src_row,
            CASE
                WHEN b.nth > 1 AND b.id IS NOT NULL THEN '{kind}.id repeats an earlier {kind}'
                WHEN field(r, '$.status') = 'entered-in-error'
                    THEN '{kind}.status is entered-in-error'
                {intent}
                WHEN b.pid IS NULL THEN '{NO_PERSON}'
                WHEN b.day IS NULL THEN '{kind} has no date'
                WHEN b.code IS NULL AND b.text IS NULL THEN '{kind} names no medication'
                WHEN c.loc IS NULL THEN 'medication not in the RxNorm to BNF map'
            END AS reason,
            row_id('{ID_PREFIX[kind]}', b.id, b.loc) AS prescription_id, b.pid AS person_id,
            b.day AS issue_date, c.bnf_code, c.medicine
        FROM b LEFT JOIN chosen c ON c.loc = b.loc
        """
    )


# --- what is written -------------------------------------------------------------------------

QUERIES: dict[str, str] = {
    "person": (
        "SELECT person_id, birth_month, sex, NULL AS ethnicity, NULL AS lsoa_code, "
        "NULL AS imd_decile, NULL AS district, NULL AS practice_code, NULL AS gp_system, "
        f"NULL AS lives_alone, NULL AS informal_carer FROM {cand('Patient')} WHERE reason IS NULL"
    ),
    "gp_event": (
        "SELECT row_id('c', id, loc) AS event_id, person_id, day AS event_date, "
        f"snomed AS snomed_code, CAST(NULL AS DOUBLE) AS value FROM {cand('Condition')} "
        "WHERE reason IS NULL AND target IS NULL UNION ALL "
        "SELECT event_id, person_id, event_date, snomed_code, value "
        f"FROM {cand('Observation')} WHERE reason IS NULL"
    ),
    "prescription": " UNION ALL ".join(
        f"SELECT prescription_id, person_id, issue_date, bnf_code, medicine FROM {cand(k)} "
        "WHERE reason IS NULL"
        for k in ("MedicationRequest", "MedicationStatement")
    ),
    "hospital_episode": (
        "SELECT row_id('e', v.eid, v.src_row) AS episode_id, v.person_id, "
        "v.start_date AS admission_date, v.end_date AS discharge_date, "
        "v.method AS admission_method, NULL AS main_specialty, "
        + ", ".join(
            f"max(CASE WHEN c.pos = {n} THEN c.icd10 END) AS diag_{n:02d}" for n in range(1, 7)
        )
        + f" FROM {cand('Encounter')} v JOIN {cand('Condition')} c "
        "ON c.eid = v.eid AND c.reason IS NULL "
        "WHERE v.reason IS NULL AND v.target = 'spell' GROUP BY ALL"
    ),
    "ae_attendance": (
        "SELECT row_id('e', v.eid, v.src_row) AS attendance_id, v.person_id, "
        "v.start_date AS arrival_date, "
        "max(CASE WHEN NOT c.external THEN c.icd10 END) AS diagnosis_code, "
        "max(CASE WHEN c.external THEN c.icd10 END) AS injury_cause, "
        f"NULL AS disposal FROM {cand('Encounter')} v "
        f"LEFT JOIN {cand('Condition')} c ON c.eid = v.eid AND c.reason IS NULL "
        "WHERE v.reason IS NULL AND v.target = 'attendance' GROUP BY ALL"
    ),
    "death": (
        f"SELECT person_id, date_of_death FROM {cand('Patient.deceased')} WHERE reason IS NULL"
    ),
}
COVERAGE: dict[str, Coverage] = {
    "person": Coverage(
        "mapped",
        ["Patient"],
        ["lsoa_code", "imd_decile", "district", "practice_code", "gp_system"],
    ),
    "gp_event": Coverage("mapped", ["Condition", "Observation"]),
    "prescription": Coverage("mapped", ["MedicationRequest", "MedicationStatement"]),
    "hospital_episode": Coverage("mapped", ["Encounter", "Condition"], ["main_specialty"]),
    "ae_attendance": Coverage("mapped", ["Encounter", "Condition"], ["disposal"]),
    "death": Coverage("mapped", ["Patient"]),
}


def _plan(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    form: str,
    versions: dict[str, str],
    extract_date: date | None,
) -> Plan:
    present = {r[0] for r in con.execute("SELECT DISTINCT type FROM res").fetchall()}
    if "Patient" not in present:
        raise SourceError(f"FHIR source {folder}: no Patient resources")
    tables: dict[str, Coverage] = {}
    queries: dict[str, str] = {}
    for name, cover in COVERAGE.items():
        have = [s for s in cover.sources if s in present]
        if not have:
            tables[name] = absent(f"the FHIR source has no {' or '.join(cover.sources)} resources")
            continue
        tables[name] = Coverage(cover.state, have, list(cover.not_supplied))
        queries[name] = QUERIES[name]
    for name, reason in NOT_HELD.items():
        tables[name] = absent(reason)
    span = dates_of(con, queries)
    today = date.today()
    first, last = span if span else (today, today)
    candidates = [t for t in TYPES if t in present]
    candidates.insert(1, "Patient.deceased")
    return Plan(
        source={"kind": "fhir", "version": "R4", "form": form, "location": str(folder)},
        maps={"codelists": codes.codelists_digest(), **versions},
        tables=tables,
        queries=queries,
        candidates=candidates,
        extract_date=extract_date or last,
        start=first,
    )
