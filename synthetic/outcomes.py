"""Outcomes as realised in the written (clean) records, by the definitions in clinical.md."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import duckdb
import pyarrow as pa

from features.codes import Codes, packaged_codes

DIAGS = [f"diag_{n:02d}" for n in range(1, 7)]


def _listed(codes: Iterable[str]) -> str:
    return ", ".join(f"'{c}'" for c in sorted(codes))


def _any_w(cols: list[str], codes: Codes) -> str:
    return " OR ".join(f"left({c}, 3) IN ({_listed(codes.fall_icd10_prefixes)})" for c in cols)


def fall_events_sql(codes: Codes) -> str:
    """Every recorded fall, by the code lists' codes."""
    fractures = _listed(codes.fragility_fracture_prefixes)
    return f"""
SELECT person_id, arrival_date AS d FROM ae_attendance
 WHERE {_any_w(["diagnosis_code", "injury_cause"], codes)}
UNION ALL
SELECT person_id, admission_date FROM hospital_episode
 WHERE admission_method = 'emergency'
   AND ({_any_w(DIAGS, codes)} OR left(diag_01, 4) IN ({fractures}))
UNION ALL
SELECT person_id, incident_date FROM ambulance_incident WHERE category IN ('fall', 'long_lie')
UNION ALL
SELECT person_id, event_date FROM gp_event WHERE snomed_code IN ({_listed(codes.fall_snomed)})
"""


def cd_events_sql(extract: date, hours: float = 14.0) -> str:
    return f"""
SELECT person_id, start_date AS d FROM social_care
 WHERE (service_type = 'home_care' AND hours_per_week >= {hours})
    OR service_type IN ('residential', 'nursing')
UNION ALL
SELECT person_id, admission_date FROM hospital_episode
 WHERE admission_method = 'emergency'
   AND coalesce(discharge_date, DATE '{extract.isoformat()}') - admission_date > 21
"""


def realised_outcomes(tables: dict[str, pa.Table], cohort: pa.Table, extract: date) -> pa.Table:
    """event and died_before_event for each (person_id, index_date, outcome) of `cohort`.

    Both are null when the 12 months after the index date go beyond the extract.
    """
    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        con.register("cohort", cohort)
        sql = f"""
WITH win AS (
  SELECT person_id, index_date, outcome,
         CAST(index_date + INTERVAL 12 MONTH AS DATE) AS stop
  FROM cohort),
fe AS ({fall_events_sql(packaged_codes())}),
ce AS ({cd_events_sql(extract)}),
adm AS (
  SELECT w.person_id, w.index_date, h.admission_date AS d,
         row_number() OVER (PARTITION BY w.person_id, w.index_date
                            ORDER BY h.admission_date) AS k
  FROM win w JOIN hospital_episode h
    ON h.person_id = w.person_id AND h.admission_method = 'emergency'
   AND h.admission_date >= w.index_date AND h.admission_date < w.stop
  WHERE w.outcome = 'complex_dependency'),
first_event AS (
  SELECT w.person_id, w.index_date, w.outcome, min(e.d) AS d
  FROM win w JOIN (
      SELECT person_id, d, 'falls' AS outcome FROM fe
      UNION ALL SELECT person_id, d, 'complex_dependency' FROM ce) e
    ON e.person_id = w.person_id AND e.outcome = w.outcome
   AND e.d >= w.index_date AND e.d < w.stop
  GROUP BY ALL
  UNION ALL
  SELECT person_id, index_date, 'complex_dependency', d FROM adm WHERE k = 3),
firsts AS (
  SELECT person_id, index_date, outcome, min(d) AS d FROM first_event GROUP BY ALL)
SELECT w.person_id, w.index_date, w.outcome,
  CASE WHEN w.stop > DATE '{extract.isoformat()}' + 1 THEN NULL
       WHEN f.d IS NOT NULL THEN 1 ELSE 0 END::TINYINT AS event,
  CASE WHEN w.stop > DATE '{extract.isoformat()}' + 1 THEN NULL
       WHEN dt.date_of_death >= w.index_date AND dt.date_of_death < w.stop
        AND (f.d IS NULL OR dt.date_of_death < f.d) THEN 1 ELSE 0 END::TINYINT
    AS died_before_event
FROM win w
LEFT JOIN firsts f USING (person_id, index_date, outcome)
LEFT JOIN death dt ON dt.person_id = w.person_id
ORDER BY w.index_date, w.outcome, w.person_id
"""
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
