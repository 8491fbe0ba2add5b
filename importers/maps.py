"""The shipped code maps (importers/maps/*.csv), loaded into a DuckDB connection as tables.

- `rxnorm_bnf.csv`: RxNorm ingredient -> BNF code and medicine name, for the medicine classes
  the features use and the medicines the synthetic county issues. Curated here: no official
  map exists (see importers/maps/README.md for how each row was chosen).
- `snomed_icd10.csv`: SNOMED CT concept -> ICD-10 code, for the concepts the features and
  outcomes need when a hospital diagnosis arrives coded in SNOMED CT only.
- `loinc_snomed.csv`: LOINC observation -> SNOMED CT observable (body mass index).
- `omop_concepts.csv`: the OMOP standard concepts the OMOP importer reads and the synthetic
  county's OMOP writer writes, by name (`omop_concepts`).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from functools import cache
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
OMOP_CONCEPTS = "omop_concepts.csv"


@dataclass(frozen=True)
class OmopConcept:
    """One OMOP standard concept: its id, vocabulary, code (where needed) and name."""

    concept_id: int
    vocabulary_id: str
    concept_code: str
    concept_name: str


class OmopConcepts(dict[str, OmopConcept]):
    """The shipped OMOP concepts by name; a name the file lacks is an error naming it."""

    def __missing__(self, name: str) -> OmopConcept:
        raise KeyError(f"{omop_concepts_path()}: no OMOP concept named {name!r}")

    def id(self, name: str) -> int:
        return self[name].concept_id


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


def omop_concepts_path() -> Path:
    return Path(str(resources.files("importers") / "maps" / OMOP_CONCEPTS))


@cache
def omop_concepts() -> OmopConcepts:
    """The shipped OMOP concepts (read on first use, never on import)."""
    path = omop_concepts_path()
    out = OmopConcepts()
    with path.open(encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                concept_id = int(row["concept_id"])
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}: concept_id {row['concept_id']!r} is not a number"
                ) from None
            out[row["name"]] = OmopConcept(
                concept_id, row["vocabulary_id"], row["concept_code"], row["concept_name"]
            )
    return out
