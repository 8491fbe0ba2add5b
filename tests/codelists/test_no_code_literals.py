"""No clinical code is written in the Python packages: every code is read from the code lists
(codelists/lists) or the importers' maps (importers/maps). The scan reads each package's string
and number literals (docstrings, comments and `description=` texts are words for people, not
code) and names the file and line of every code-shaped one. Each shape is proved by a small
test that it catches a literal of that kind."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from codelists import icd10_valid, snomed_valid
from codelists.checks import bnf_valid

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "carerisk", "codelists", "importers", "features", "training", "models", "evaluation",
    "serving", "synthetic", "bench", "referrals",
)  # fmt: skip

# numbers bound to these names in a module that speaks of OMOP concepts are not concepts
NOT_CONCEPTS = {
    "LOCAL_CONCEPT_FROM": "the start of the ids the CDM leaves to local concepts",
    "LONGEST_SPELL_DAYS": "a number of days",
}

SNOMED_TEXT = re.compile(r"(?<![\w.\0-])[1-9][0-9]{5,17}(?![\w.\0-])")
ICD10_TEXT = re.compile(r"(?<![\w.\0-])[A-Z][0-9]{2}(?:\.?[0-9X])?(?![\w\0-])")
LOINC_TEXT = re.compile(r"(?<![\w.\0-])([0-9]{1,5})-([0-9])(?![\w.\0-])")
# a BNF paragraph (6 digits), sub-paragraph (7) or chemical substance (9): chapter 01-23, never
# section 00 (a 4-digit section would be any year's text)
BNF_TEXT = re.compile(
    r"(?<![\w.\0-])(?:0[1-9]|1[0-9]|2[0-3])(?:0[1-9]|[1-9][0-9])[0-9]{2}"
    r"(?:[0-9](?:[0-9A-Z]{2})?)?(?![\w.\0-])"
)
TREATMENT_FUNCTION = re.compile(r"[1-9][0-9]{2}")
# a number beside an OMOP concept column in SQL: `9201 AS visit_concept_id`,
# `visit_concept_id = 9201`, `gender_concept_id IN (8507, 8532)`
OMOP_SQL = re.compile(
    r"(?<![\w.])[1-9][0-9]{2,}\s+AS\s+\w*concept_id\b"
    r"|\w*concept_id\s*(?:=|<>|!=|IN\s*\()\s*[1-9][0-9]{2,}",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Found:
    path: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} {self.text!r}"


def loinc_valid(number: str, check: str) -> bool:
    """LOINC's mod 10 check digit (the Luhn digit of the code's number)."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10 == int(check)


def text_codes(text: str) -> Iterator[tuple[str, str]]:
    """(kind, code) for each code-shaped part of a string literal."""
    for m in SNOMED_TEXT.finditer(text):
        if snomed_valid(m.group()):
            yield "SNOMED CT", m.group()
    for m in ICD10_TEXT.finditer(text):
        if icd10_valid(m.group()):
            yield "ICD-10 or OPCS-4", m.group()
    for m in LOINC_TEXT.finditer(text):
        if loinc_valid(m.group(1), m.group(2)):
            yield "LOINC", m.group()
    for m in BNF_TEXT.finditer(text):
        if bnf_valid(m.group()):
            yield "BNF", m.group()
    if TREATMENT_FUNCTION.fullmatch(text.strip()):
        yield "treatment function", text
    for m in OMOP_SQL.finditer(text):
        yield "OMOP concept id", m.group()


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _strings(tree: ast.AST, skip: set[int]) -> Iterator[tuple[int, str]]:
    """(line, text) of each string literal; an f-string is read whole, each formatted value
    as a NUL, so that a code-shaped run glued to one (an LSOA's `E01` prefix) is not a code."""
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = ""
            for value in node.values:
                parts.add(id(value))
                is_text = isinstance(value, ast.Constant) and isinstance(value.value, str)
                text += value.value if is_text else "\0"  # type: ignore[union-attr]
            yield node.lineno, text
        if isinstance(node, ast.keyword) and node.arg == "description":
            skip.add(id(node.value))
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in skip and id(node) not in parts:
            yield node.lineno, node.value  # type: ignore[attr-defined]


def _named_numbers(tree: ast.AST) -> Iterator[tuple[str, ast.Constant]]:
    """Each number bound to a module-level name (also in a tuple), with the name."""
    for node in getattr(tree, "body", []):
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            names = target.elts if isinstance(target, ast.Tuple) else [target]
            value = node.value
            values = value.elts if isinstance(value, ast.Tuple) else [value]
            for name, item in zip(names, values, strict=False):
                for const in ast.walk(item) if item is not None else ():
                    if isinstance(const, ast.Constant) and isinstance(name, ast.Name):
                        yield name.id, const


def source_codes(text: str, path: str = "<text>") -> list[Found]:
    """Every code-shaped literal of a Python source text."""
    tree = ast.parse(text)
    skip = _docstrings(tree)
    found = []
    for line, string in _strings(tree, skip):
        for kind, code in text_codes(string):
            found.append(Found(path, line, kind, code))
    if "concept_id" in text:
        for name, const in _named_numbers(tree):
            number = const.value
            big = isinstance(number, int) and not isinstance(number, bool) and number >= 100
            if big and name not in NOT_CONCEPTS:
                found.append(Found(path, const.lineno, "OMOP concept id", f"{name}={number}"))
    return found


def package_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_code_literal_is_left_in_the_packages() -> None:
    found = [
        f
        for path in package_files()
        for f in source_codes(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert not found, (
        "code literals in Python (move them to codelists/lists or importers/maps):\n"
        + "\n".join(map(str, found))
    )


def test_the_scan_reads_every_package() -> None:
    scanned = {p.relative_to(ROOT).parts[0] for p in package_files()}
    assert {"features", "importers", "synthetic", "serving", "codelists"} <= scanned


# each literal that was once in the packages, as it was written there
CAUGHT = [
    ('snomed=("161898004", "Falls")', "SNOMED CT", "161898004"),
    ('at_risk_finding=("129839007", "At risk for falls")', "SNOMED CT", "129839007"),
    ('BMI_LOINC = "39156-5"', "LOINC", "39156-5"),
    ('FALL_ICD10 = "W19"', "ICD-10 or OPCS-4", "W19"),
    ("x = \"WHERE snomed_code = '52448006'\"", "SNOMED CT", "52448006"),
    ('EMERGENCY = ("300", "430", "710")', "treatment function", "300"),
    ('BNF = "0403030Q0"', "BNF", "0403030Q0"),
    ('FRID = ("040303",)', "BNF", "040303"),
    ("sql = f\"code IN ('{a}', 'S720')\"", "ICD-10 or OPCS-4", "S720"),
    ('HIP = "S720"', "ICD-10 or OPCS-4", "S720"),
    ('HIP_REPLACEMENT = "W37.1"', "ICD-10 or OPCS-4", "W37.1"),
    (
        'sql = f"{x} AS cdm_version, 756265 AS cdm_version_concept_id"',
        "OMOP concept id",
        "756265 AS cdm_version_concept_id",
    ),
    ('sql = "WHERE visit_concept_id = 9201"', "OMOP concept id", "visit_concept_id = 9201"),
]


@pytest.mark.parametrize(("source", "kind", "code"), CAUGHT, ids=[c[2] for c in CAUGHT])
def test_the_scan_catches_each_kind_of_code(source: str, kind: str, code: str) -> None:
    assert (kind, code) in {(f.kind, f.text) for f in source_codes(source)}


def test_the_scan_catches_omop_concept_ids_bound_to_names() -> None:
    source = (
        'BMI_LOINC_CONCEPT = (3038553, "Body mass index (BMI) [Ratio]", "39156-5")\n'
        "INPATIENT, ER = 9201, 9203\n"
        'SQL = "SELECT visit_concept_id FROM visit_occurrence"\n'
    )
    found = {f.text for f in source_codes(source, "omop.py")}
    assert {"BMI_LOINC_CONCEPT=3038553", "INPATIENT=9201", "ER=9203", "39156-5"} <= found
    assert {f.line for f in source_codes(source, "omop.py")} == {1, 2}


def test_numbers_that_are_not_codes_do_not_trip_the_scan() -> None:
    source = '''
"""A docstring may name 161898004 Falls and W19."""
PORT = 8000
SEED = 20240401
THRESHOLD = 0.05
PEOPLE = 4_000
DATE = "2024-04-01"
URL = "http://127.0.0.1:3000/v1/score"
STATUS = 200
SQL = "SELECT count(*) FROM t WHERE age >= 65 AND n > 300 LIMIT 100"
LABEL = "p95 of 20 runs, 1-2 days, version 2.4.1"
YEAR = "2019"
LSOA = f"E01{n:06d}"
OFFSET = f"{LOCAL} + 1000000 + n"
Column("cause", description="an external cause, e.g. W19X for a fall")
WIDTH = "lpad(x, 20, '0')"
'''
    assert source_codes(source) == []


def test_a_finding_names_the_file_and_the_line() -> None:
    (found,) = source_codes('\n\nFALL = "W19"\n', "importers/codes.py")
    assert str(found) == "importers/codes.py:3: ICD-10 or OPCS-4 'W19'"
