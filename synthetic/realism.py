"""Realism figures of a generated county, measured from the written files (clinical.md)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from features.codes import packaged_codes
from features.definitions import FRACTURE_POSITION


def _listed(codes: tuple[str, ...]) -> str:
    return ", ".join(f"'{c}'" for c in codes)


def _deficit_codes() -> str:
    deficits = packaged_codes().efi_deficits.items()
    return ", ".join(f"('{code}', '{name}')" for name, cs in deficits for code in sorted(cs))


def realism_figures(out_dir: Path, reference: str | None = None) -> dict[str, float]:
    """Figures for people aged 65+ over the year before `reference` (default: the extract end)."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    ref = reference or manifest["index_dates"][-1]
    con = duckdb.connect()
    try:
        for name in manifest["rows"]:
            path = out_dir / f"{name}.{manifest['format']}"
            reader = "read_parquet" if manifest["format"] == "parquet" else "read_csv_auto"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {reader}('{path}')")
        for name in ("true_risk", "outcomes"):
            path = out_dir / "truth" / f"{name}.parquet"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        con.execute(
            f"CREATE TABLE deficit_codes AS SELECT * FROM (VALUES {_deficit_codes()}) v(code, name)"
        )
        return _figures(con, ref)
    finally:
        con.close()


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    row = con.execute(sql).fetchone()
    return float(row[0]) if row and row[0] is not None else float("nan")


def _figures(con: duckdb.DuckDBPyConnection, ref: str) -> dict[str, float]:
    r = f"DATE '{ref}'"
    falls_w = _listed(packaged_codes().fall_icd10_prefixes)
    con.execute(
        f"""CREATE TEMP TABLE old AS
        SELECT p.*, d.date_of_death FROM person p LEFT JOIN death d USING (person_id)
        WHERE date_diff('year', birth_month, {r} - INTERVAL 1 YEAR) >= 65
          AND (d.date_of_death IS NULL OR d.date_of_death >= {r} - INTERVAL 1 YEAR)"""
    )
    year = f"BETWEEN {r} - INTERVAL 1 YEAR AND {r} - 1"
    fractures = _listed(packaged_codes().fragility_fracture_prefixes)
    f: dict[str, float] = {}
    f["share_65_plus"] = _one(
        con, f"SELECT avg((date_diff('year', birth_month, {r}) >= 65)::INT) FROM person"
    )
    f["fall_admission_rate"] = _one(
        con,
        f"""SELECT count(DISTINCT h.person_id) / (SELECT count(*) FROM old)
        FROM hospital_episode h JOIN old USING (person_id)
        WHERE admission_method = 'emergency' AND admission_date {year}
          AND (left({FRACTURE_POSITION}, 4) IN ({fractures})
               OR {" OR ".join(f"left(diag_0{k}, 3) IN ({falls_w})" for k in range(1, 7))})""",
    )
    f["hip_fracture_rate"] = _one(
        con,
        f"""SELECT count(DISTINCT h.person_id) / (SELECT count(*) FROM old)
        FROM hospital_episode h JOIN old USING (person_id)
        WHERE admission_method = 'emergency' AND admission_date {year}
          AND left(diag_01, 4) IN ({_listed(packaged_codes().hip_fracture_prefixes)})""",
    )
    f["death_rate"] = _one(con, f"SELECT avg(coalesce(date_of_death {year}, false)::INT) FROM old")
    f["living_alone"] = _one(con, "SELECT avg(lives_alone::INT) FROM old")
    f["ethnicity_unrecorded"] = _one(con, "SELECT avg((ethnicity IS NULL)::INT) FROM person")
    dementia = _listed(tuple(sorted(packaged_codes().conditions["dementia"][0])))
    f["dementia_diagnosed"] = _one(
        con,
        f"""SELECT count(DISTINCT g.person_id) / (SELECT count(*) FROM old)
        FROM gp_event g JOIN old USING (person_id) WHERE snomed_code IN ({dementia})""",
    )
    f["long_term_care"] = _one(
        con,
        f"""SELECT count(DISTINCT s.person_id) / (SELECT count(*) FROM old)
        FROM social_care s JOIN old USING (person_id)
        WHERE service_type IN ('home_care', 'residential', 'nursing')
          AND start_date <= {r} - INTERVAL 1 YEAR
          AND (end_date IS NULL OR end_date > {r} - INTERVAL 1 YEAR)""",
    )
    f.update(_efi(con, r, year))
    f.update(_truth(con))
    return f


def _efi(con: duckdb.DuckDBPyConnection, r: str, year: str) -> dict[str, float]:
    con.execute(
        f"""CREATE TEMP TABLE efi AS
        WITH d AS (
          SELECT DISTINCT g.person_id, c.name FROM gp_event g
          JOIN deficit_codes c ON c.code = g.snomed_code WHERE g.event_date < {r}
          UNION
          SELECT person_id, 'polypharmacy' FROM prescription
          WHERE issue_date {year} GROUP BY person_id HAVING count(DISTINCT bnf_code) >= 5)
        SELECT o.person_id, count(d.name) / 36.0 AS efi,
          CASE WHEN count(d.name) / 36.0 <= 0.12 THEN 'fit'
               WHEN count(d.name) / 36.0 <= 0.24 THEN 'mild'
               WHEN count(d.name) / 36.0 <= 0.36 THEN 'moderate' ELSE 'severe' END AS band
        FROM old o LEFT JOIN d USING (person_id) GROUP BY o.person_id"""
    )
    out: dict[str, float] = {}
    for band in ("fit", "mild", "moderate", "severe"):
        out[f"efi_{band}"] = _one(con, f"SELECT avg((band = '{band}')::INT) FROM efi")
        out[f"admission_rate_{band}"] = _one(
            con,
            f"""SELECT count(h.person_id) / (SELECT count(*) FROM efi WHERE band = '{band}')
            FROM efi e JOIN hospital_episode h USING (person_id)
            WHERE e.band = '{band}' AND h.admission_method = 'emergency'
              AND h.admission_date BETWEEN {r} AND {r} + INTERVAL 1 YEAR""",
        )
    return out


def _truth(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Each outcome's realised event rate and mean true probability over the dates with
    follow-up (the truth's discrimination is measured with evaluation.metrics.auroc)."""
    out: dict[str, float] = {}
    for outcome in ("falls", "complex_dependency"):
        row = con.execute(
            """SELECT avg(o.event), avg(t.true_probability) FROM true_risk t JOIN outcomes o
            USING (person_id, index_date, outcome)
            WHERE t.outcome = ? AND o.event IS NOT NULL""",
            [outcome],
        ).fetchone() or (None, None)
        out[f"{outcome}_event_rate"] = float("nan") if row[0] is None else float(row[0])
        out[f"{outcome}_mean_true"] = float("nan") if row[1] is None else float(row[1])
    return out
