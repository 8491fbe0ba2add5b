"""SQL pieces both importers use: code macros, the code maps as lookup tables, the order in
which a combination medicine's ingredients are chosen."""

from __future__ import annotations

import duckdb

from features.store_sql import literal
from importers import codes
from importers.maps import load_maps

NO_PERSON = "person not among the persons written"


def prepare(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Load the maps, create the macros and the SNOMED CT -> ICD-10 lookup; the maps'
    versions."""
    versions = load_maps(con)
    con.execute(
        # a SNOMED CT identifier as written (6-18 digits, no leading zero), else NULL
        "CREATE OR REPLACE MACRO snomed_of(s) AS CASE WHEN regexp_full_match(trim(s), "
        "'[1-9][0-9]{5,17}') THEN trim(s) END"
    )
    con.execute(
        # an ICD-10 or ICD-10-CM code (K92.2, S72.001A, W19X) as the contract writes it: no
        # dot, at most four characters; NULL when the text is not one
        "CREATE OR REPLACE MACRO icd10_of(s) AS CASE WHEN regexp_full_match(upper(trim(s)), "
        "'[A-Z][0-9]{2}(\\.?[0-9A-Z]{1,4})?') THEN left(replace(upper(trim(s)), '.', ''), 4) END"
    )
    con.execute("CREATE OR REPLACE MACRO is_external(c) AS left(c, 1) BETWEEN 'V' AND 'Y'")
    cause = literal(codes.fall_icd10())
    falls = ", ".join(f"({literal(c)}, {cause})" for c in sorted(codes.fall_snomed()))
    con.execute(
        "CREATE OR REPLACE TABLE snomed_icd10 AS SELECT snomed_code, min(icd10_code) AS "
        f"icd10_code FROM (SELECT snomed_code, icd10_code FROM map_snomed_icd10 UNION ALL "
        f"SELECT * FROM (VALUES {falls})) GROUP BY snomed_code"
    )
    con.execute(
        "CREATE OR REPLACE TABLE rxnorm_bnf AS SELECT *, "
        f"{ingredient_order('bnf_code', 'medicine')} AS choice FROM map_rxnorm_bnf"
    )
    return versions


def ingredient_order(bnf: str, medicine: str) -> str:
    """SQL text that sorts a medicine's candidate BNF rows: a falls-risk class first, then the
    most specific BNF code, then by code and name."""
    frid = " OR ".join(f"{bnf} LIKE {literal(p + '%')}" for p in codes.frid_bnf_prefixes())
    return (
        f"(CASE WHEN {frid} THEN '0' ELSE '1' END) || lpad(CAST(20 - length({bnf}) AS VARCHAR), "
        f"2, '0') || {bnf} || ' ' || {medicine}"
    )
