"""What a store's coding matched, by the code lists now and by the representative lists that
came before them (features/codes.py before the code lists), matched as the features matched
them: SNOMED CT and treatment functions exactly, ICD-10 and BNF by prefix.

    git show 56bd38f~1:features/codes.py > /tmp/old_codes.py
    python bench/codes_matched.py STORE.duckdb /tmp/old_codes.py

For each code column: its rows and distinct codes, and how many of each a list matched,
before and after. The "after" figures are those `carerisk codes report` gives.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb

from codelists import CodeLists
from codelists.report import CODE_COLUMNS, GENERATOR_PREFIX, PREFIX_SYSTEMS

Codes = dict[str, set[str]]  # code system -> codes (exact) or prefixes


def old_lists(module: ModuleType) -> Codes:
    """The representative lists of the old features/codes.py, by code system."""
    m: Any = module
    snomed = {*m.FALL_SNOMED, m.BMI_SNOMED, m.ALCOHOL_UNITS_SNOMED, m.HEAVY_DRINKER_SNOMED}
    snomed |= {*m.SMOKING_STATUS_SNOMED, *m.FRAILTY_DIAGNOSIS_SNOMED}
    snomed |= {*m.GAIT_BALANCE_SNOMED, *m.FALLS_ASSESSMENT_SNOMED}
    snomed |= {c for s, _ in m.CONDITIONS.values() for c in s}
    snomed |= {c for s in m.EFI_DEFICITS.values() for c in s}
    icd10 = {*m.FALL_ICD10_PREFIXES, *m.FRAGILITY_FRACTURE_PREFIXES, m.TENDENCY_TO_FALL_ICD10}
    icd10 |= {c for _, i in m.CONDITIONS.values() for c in i}
    bnf = {c for prefixes in m.FRID_BNF_PREFIXES.values() for c in prefixes}
    return {
        "snomed": snomed,
        "icd10": icd10,
        "bnf": bnf,
        "treatment_function": set(m.MENTAL_HEALTH_SPECIALTIES),
    }


def new_lists(lists: CodeLists) -> Codes:
    """The concept lists of a CodeLists (the generator's lists match nothing), by system."""
    out: Codes = {}
    for item in lists.lists.values():
        if not item.name.startswith(GENERATOR_PREFIX):
            out.setdefault(item.system, set()).update(item.codes)
    return out


def matched(con: duckdb.DuckDBPyConnection, lists: Codes) -> dict[str, dict[str, int]]:
    """Per code column: rows, distinct codes, and those a list matches."""
    present = {
        tuple(r)
        for r in con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall()
    }
    out = {}
    for (table, column), system in CODE_COLUMNS.items():
        if (table, column) not in present:
            continue
        value = (
            f'"{column}"' if system not in ("icd10",) else f"upper(replace(\"{column}\", '.', ''))"
        )
        counts = con.execute(
            f'SELECT {value}, count(*) FROM "{table}" WHERE "{column}" IS NOT NULL '
            f"AND \"{column}\" <> '' GROUP BY 1"
        ).fetchall()
        codes = lists.get(system, set())
        if system in PREFIX_SYSTEMS:
            prefixes = tuple(codes)
            hit = [n for code, n in counts if str(code).startswith(prefixes)]
        else:
            hit = [n for code, n in counts if code in codes]
        out[f"{table}.{column}"] = {
            "rows": sum(n for _, n in counts),
            "codes": len(counts),
            "matched_rows": sum(hit),
            "matched_codes": len(hit),
        }
    return out


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("old_codes", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("old_codes", type=Path, help="the old features/codes.py")
    args = parser.parse_args()
    con = duckdb.connect(str(args.store), read_only=True)
    try:
        result = {
            "before": matched(con, old_lists(_module(args.old_codes))),
            "after": matched(con, new_lists(CodeLists.load())),
        }
    finally:
        con.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
