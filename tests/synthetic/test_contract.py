"""Every written table matches the data contract: names, kinds, patterns, values."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from codelists import snomed_valid
from features.codes import packaged_codes
from features.contract import TABLES, Table
from synthetic import GenerationSummary
from synthetic.assemble import ARROW_TYPES

EXTRACT = date(2025, 3, 31)


def _read(out: Path, spec: Table) -> pa.Table:
    return pq.read_table(out / f"{spec.name}.parquet")


@pytest.mark.parametrize("spec", TABLES, ids=lambda t: t.name)
def test_columns_and_types_match_the_contract(
    county: tuple[Path, GenerationSummary], spec: Table
) -> None:
    table = _read(county[0], spec)
    assert table.column_names == spec.column_names
    for col in spec.columns:
        assert table.schema.field(col.name).type == ARROW_TYPES[col.kind], col.name
    assert table.num_rows > 0


@pytest.mark.parametrize("spec", TABLES, ids=lambda t: t.name)
def test_values_obey_the_contract(county: tuple[Path, GenerationSummary], spec: Table) -> None:
    table = _read(county[0], spec)
    for col in spec.columns:
        arr = table.column(col.name)
        if not col.nullable:
            assert arr.null_count == 0, f"{spec.name}.{col.name} has empty values"
        values = [v for v in pc.unique(arr).to_pylist() if v is not None]
        if col.allowed is not None:
            assert set(values) <= col.allowed, f"{spec.name}.{col.name}"
        if col.pattern is not None:
            bad = [v for v in values if not re.fullmatch(col.pattern, v)]
            assert not bad, f"{spec.name}.{col.name}: {bad[:5]}"
        if col.snomed:
            assert all(snomed_valid(v) for v in values)
        if col.minimum is not None and values:
            assert min(values) >= col.minimum
        if col.maximum is not None and values:
            assert max(values) <= col.maximum
    key = table.select(list(spec.key))
    assert key.group_by(list(spec.key)).aggregate([]).num_rows == table.num_rows
    for earlier, later in spec.ordered_dates:
        both = table.filter(pc.is_valid(table.column(later)))
        assert pc.all(pc.less_equal(both.column(earlier), both.column(later))).as_py()
    if spec.event_date is not None:
        assert pc.max(table.column(spec.event_date)).as_py() <= EXTRACT


def test_person_ids_are_pseudonyms_not_nhs_numbers(county: tuple[Path, GenerationSummary]) -> None:
    ids = pq.read_table(county[0] / "person.parquet").column("person_id").to_pylist()
    assert all(re.fullmatch(r"P[0-9a-f]{12}", v) for v in ids)
    assert not any(re.fullmatch(r"[0-9]{10}", v) for v in ids)
    assert len(set(ids)) == 20_000


def test_geography_and_systems(county: tuple[Path, GenerationSummary]) -> None:
    person = pq.read_table(county[0] / "person.parquet")
    districts = set(person.column("district").to_pylist())
    assert districts == {
        "Bromsgrove", "Malvern Hills", "Redditch", "Worcester", "Wychavon", "Wyre Forest",
    }  # fmt: skip
    assert set(person.column("gp_system").to_pylist()) == {"EMIS", "SystmOne", "Vision"}
    eth = person.column("ethnicity").to_pylist()
    assert set(eth) - {None} == {"white", "mixed", "asian", "black", "other"}


def test_no_event_after_death(county: tuple[Path, GenerationSummary]) -> None:
    out = county[0]
    death = dict(zip(*pq.read_table(out / "death.parquet").to_pydict().values(), strict=True))
    for spec in TABLES:
        if spec.event_date is None or spec.name == "death":
            continue
        t = pq.read_table(out / f"{spec.name}.parquet", columns=["person_id", spec.event_date])
        for pid, day in zip(*t.to_pydict().values(), strict=True):
            if pid in death:
                assert day <= death[pid], (spec.name, pid)


def test_codes_from_the_lists_and_others(county: tuple[Path, GenerationSummary]) -> None:
    out = county[0]
    snomed = set(pq.read_table(out / "gp_event.parquet").column("snomed_code").to_pylist())
    named = set(packaged_codes().all_snomed())
    assert snomed & set(packaged_codes().fall_snomed)
    assert packaged_codes().bmi & snomed and packaged_codes().alcohol_units & snomed
    assert len(snomed - named) >= 10  # plausible codes no list names
    hosp = pq.read_table(out / "hospital_episode.parquet").to_pydict()
    diags = {v for k in hosp if k.startswith("diag_") for v in hosp[k] if v}
    assert {"S720", "W19X"} <= diags
    assert not any(d[:3] in ("W02", "W12", "W15") for d in diags)
    bnf = set(pq.read_table(out / "prescription.parquet").column("bnf_code").to_pylist())
    frid = [p for ps in packaged_codes().frid_bnf_prefixes.values() for p in ps]
    assert all(any(b.startswith(p) for b in bnf) for p in frid)
