"""From numpy row parts to Arrow tables with exactly the contract's columns and types."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import Table
from synthetic.people import DISTRICTS, ETHNICITIES, GP_SYSTEMS, Geography
from synthetic.records import NO_DATE, Part, vocabs

ARROW_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}
ID_PREFIX = {
    "gp_event": "G",
    "prescription": "RX",
    "hospital_episode": "H",
    "ae_attendance": "AE",
    "ambulance_incident": "AM",
    "social_care": "SC",
    "fire_home_visit": "FV",
}


_ROUNDS = ((17, 0xD6E8FEB86659FD93), (21, 0xA0761D6478BD642F), (19, 0xE7037ED1A0B428DB))


def person_ids(seed: int, index: np.ndarray) -> np.ndarray:
    """Pseudonyms "P" + 12 hex digits: a keyed bijection of the person number (never clash)."""
    mask = np.uint64((1 << 48) - 1)
    key = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % (1 << 48))
    x = (index.astype(np.uint64) + key) & mask
    with np.errstate(over="ignore"):
        for shift, mult in _ROUNDS:
            x ^= x >> np.uint64(shift)
            x = (x * np.uint64(mult)) & mask
        x ^= x >> np.uint64(23)
    return np.array([f"P{v:012x}" for v in x.tolist()], dtype=object)


def _strings(values: tuple[str, ...] | list[str], pos: np.ndarray) -> pa.Array:
    pos = np.asarray(pos, dtype=np.int64)
    idx = pa.array(pos, mask=pos < 0)
    return pa.array(list(values), type=pa.string()).take(idx)


def _dates(days: np.ndarray) -> pa.Array:
    days = np.asarray(days, dtype=np.int64)
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=days == NO_DATE)


def _floats(x: np.ndarray) -> pa.Array:
    x = np.asarray(x, dtype=float)
    return pa.array(x, type=pa.float64(), mask=np.isnan(x))


def _bools(x: np.ndarray) -> pa.Array:
    x = np.asarray(x)
    if x.dtype == np.int8:
        return pa.array(x == 1, type=pa.bool_(), mask=x < 0)
    return pa.array(x.astype(bool), type=pa.bool_())


def order_rows(spec: Table, part: Part) -> Part:
    """Rows by person, each person's by date (stable): people are numbered chunk by chunk,
    so a county's table is its chunks' tables one after another (what lets it stream)."""
    date_col = spec.event_date or ("birth_month" if spec.name == "person" else None)
    keys = [part["person"]]
    if date_col is not None and spec.name != "person":
        keys.append(part[date_col])
    order = np.lexsort(keys[::-1]) if len(keys) > 1 else np.argsort(keys[0], kind="stable")
    return {k: np.asarray(v)[order] for k, v in part.items()}


def to_arrow(
    spec: Table,
    part: Part,
    pids: pa.Array,
    geo: Geography,
    first_person: int = 0,
    first_number: int = 1,
) -> pa.Table:
    """The part's rows in order as an Arrow table: `pids[i]` is person `first_person + i`
    (one chunk of people), row ids numbered from `first_number`."""
    part = order_rows(spec, part)
    n = len(part["person"])
    cols: dict[str, pa.Array] = {}
    for col in spec.columns:
        name = col.name
        if name == "person_id":
            cols[name] = pids.take(pa.array(np.asarray(part["person"]) - first_person))
        elif name == spec.key[0] and name != "person_id":
            row_numbers = np.arange(first_number, first_number + n, dtype=np.int64)
            numbers = pc.cast(pa.array(row_numbers), pa.string())
            cols[name] = pc.binary_join_element_wise(ID_PREFIX[spec.name], numbers, "")
        elif (spec.name, name) in vocabs():
            cols[name] = _strings(vocabs()[(spec.name, name)], part[name])
        elif spec.name == "person" and col.kind == "str":
            cols[name] = _person_strings(name, part[name], geo)
        elif col.kind == "date":
            cols[name] = _dates(part[name])
        elif col.kind == "float":
            cols[name] = _floats(part[name])
        elif col.kind == "bool":
            cols[name] = _bools(part[name])
        elif col.kind == "int":
            cols[name] = pa.array(np.asarray(part[name], dtype=np.int64), type=pa.int64())
        else:
            raise ValueError(f"table {spec.name}: no rule to write column {name}")
    schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.kind]) for c in spec.columns])
    return pa.Table.from_arrays([cols[c.name] for c in spec.columns], schema=schema)


def _person_strings(name: str, values: np.ndarray, geo: Geography) -> pa.Array:
    if name == "sex":
        return pa.array(np.asarray(values, dtype=str), type=pa.string())
    lookup = {
        "ethnicity": list(ETHNICITIES),
        "lsoa_code": geo.lsoa_codes,
        "district": list(DISTRICTS),
        "practice_code": geo.practice_codes,
        "gp_system": [GP_SYSTEMS[k] for k in geo.practice_system],
    }[name]
    return _strings(lookup, values)
