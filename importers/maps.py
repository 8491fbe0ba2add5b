"""The shipped code maps (importers/maps/*.csv), loaded into a DuckDB connection as tables.

- `rxnorm_bnf.csv`: RxNorm ingredient -> BNF code and medicine name, for the medicine classes
  the features use and the medicines the synthetic county issues. Curated here: no official
  map exists (see importers/maps/README.md for how each row was chosen).
- `snomed_icd10.csv`: SNOMED CT concept -> ICD-10 code, for the concepts the features and
  outcomes need when a hospital diagnosis arrives coded in SNOMED CT only.
- `loinc_snomed.csv`: LOINC observation -> SNOMED CT observable (body mass index).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import duckdb

from features.store_sql import literal

MAPS: dict[str, str] = {
    "rxnorm_bnf": "rxnorm_bnf.csv",
    "snomed_icd10": "snomed_icd10.csv",
    "loinc_snomed": "loinc_snomed.csv",
}
MAPS_VERSION = "2026.12"  # raised whenever a map's rows change


def map_path(name: str) -> Path:
    return Path(str(resources.files("importers") / "maps" / MAPS[name]))


def map_version(name: str) -> str:
    """The maps' version and the first 12 hex digits of this file's SHA-256."""
    digest = hashlib.sha256(map_path(name).read_bytes()).hexdigest()[:12]
    return f"{MAPS_VERSION}+{digest}"


def load_maps(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Create map_<name> tables (every column text) and return each map's version."""
    for name in MAPS:
        con.execute(
            f"CREATE OR REPLACE TABLE map_{name} AS SELECT * FROM "
            f"read_csv({literal(map_path(name))}, header = true, all_varchar = true)"
        )
    return {name: map_version(name) for name in MAPS}
