"""The code lists the importers read, in one place (today features.codes; the shared code
lists object later): switching their source changes this module only."""

from __future__ import annotations

import hashlib
import inspect

from features import codes

BMI_SNOMED = codes.BMI_SNOMED
BMI_LOINC = "39156-5"  # LOINC body mass index, as OMOP and FHIR sources code BMI
FALL_SNOMED = codes.FALL_SNOMED
FALL_ICD10 = "W19"  # unspecified fall: a fall coded in SNOMED CT on a hospital record
# BNF prefixes of the falls-risk-increasing drug classes: a combination medicine is written as
# its ingredient in one of these classes first
FRID_BNF_PREFIXES: tuple[str, ...] = tuple(
    p for prefixes in codes.FRID_BNF_PREFIXES.values() for p in prefixes
)


def codelists_digest() -> str:
    """The first 12 hex digits of the SHA-256 of the code lists' source."""
    return hashlib.sha256(inspect.getsource(codes).encode()).hexdigest()[:12]
