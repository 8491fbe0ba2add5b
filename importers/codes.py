"""The codes the importers read, from the code lists (features.codes): the one module that
knows where they come from."""

from __future__ import annotations

from features.codes import packaged_codes


def bmi_snomed() -> str:
    """The SNOMED CT body mass index observable the features read (the bmi list's concept)."""
    return sorted(packaged_codes().bmi)[0]


def fall_icd10() -> str:
    """The ICD-10 code a fall coded in SNOMED CT only is given on a hospital record (W19,
    unspecified fall, in the packaged lists)."""
    return packaged_codes().fall_unspecified_icd10


def fall_snomed() -> frozenset[str]:
    """The GP codes of a fall."""
    return packaged_codes().fall_snomed


def frid_bnf_prefixes() -> tuple[str, ...]:
    """BNF prefixes of the falls-risk-increasing drug classes: a combination medicine is
    written as its ingredient in one of these classes first."""
    classes = packaged_codes().frid_bnf_prefixes.values()
    return tuple(p for prefixes in classes for p in prefixes)


def codelists_digest() -> str:
    """The first 12 hex digits of the code lists' digest."""
    return packaged_codes().digest[:12]
