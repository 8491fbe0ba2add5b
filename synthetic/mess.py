"""Injected data problems (switchable) and the manifest of every bad row written.

Every bad row is an added row (a copy of a real row, changed), so the clean records, and
the outcomes computed from them, are untouched once the loader quarantines the bad rows.
The kinds are the loader's quarantine reason codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import TABLES, Table

KINDS = (
    "duplicate_row",
    "after_death",
    "future_date",
    "invalid_code",
    "missing_value",
    "wrong_type",
)
WRONG_TYPE = {"gp_event": "value", "social_care": "hours_per_week", "person": "imd_decile"}
INVALID: dict[str, tuple[str, Callable[[str], str]]] = {
    "gp_event": ("snomed_code", lambda v: v[:-1] + str((int(v[-1]) + 1) % 10)),
    "hospital_episode": ("diag_01", lambda v: "W1"),
    "ae_attendance": ("diagnosis_code", lambda v: "12AB"),
    "prescription": ("bnf_code", lambda v: "04A1"),
    "ambulance_incident": ("category", lambda v: "unknown"),
    "social_care": ("service_type", lambda v: "respite"),
    "person": ("sex", lambda v: "U"),
}
MESS_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("row_number", pa.int64()),
        pa.field("column", pa.string()),
        pa.field("kind", pa.string()),
    ]
)


def _id_col(spec: Table) -> str | None:
    key = spec.key[0]
    return key if key != "person_id" else None


def _replace(t: pa.Table, name: str, values: pa.Array | list) -> pa.Table:
    i = t.schema.get_field_index(name)
    arr = pa.array(values, type=t.schema.field(name).type) if isinstance(values, list) else values
    return t.set_column(i, t.schema.field(name), arr)


def _stringify(t: pa.Table, name: str) -> pa.Table:
    i = t.schema.get_field_index(name)
    return t.set_column(i, pa.field(name, pa.string()), pc.cast(t.column(name), pa.string()))


class Rows(Protocol):
    """A table's rows, read by position: an Arrow table, or a file read in row groups."""

    @property
    def num_rows(self) -> int: ...

    def take(self, indices: np.ndarray) -> pa.Table: ...


class TableRows:
    """An Arrow table as Rows."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def take(self, indices: np.ndarray) -> pa.Table:
        return self.table.take(pa.array(indices, type=pa.int64()))


class Stringified:
    """Rows with one column cast to text (where wrong_type puts text in a typed column)."""

    def __init__(self, rows: Rows, column: str | None) -> None:
        self.rows = rows
        self.column = column

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    def take(self, indices: np.ndarray) -> pa.Table:
        return self.cast(self.rows.take(indices))

    def cast(self, t: pa.Table) -> pa.Table:
        return t if self.column is None else _stringify(t, self.column)


@dataclass
class BadRows:
    """One table's bad rows in order, each to go before clean row `before[j]`."""

    table: pa.Table
    before: np.ndarray
    stringified: str | None
    labels: list[tuple[str, str]]  # (column or "", kind) of each bad row

    def mess_rows(self) -> list[tuple[int, str, str]]:
        """(row number in the written table, column, kind) of each bad row."""
        return [(int(b) + j, *self.labels[j]) for j, b in enumerate(self.before.tolist())]

    def interleave(self, batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
        """The clean table's batches, in order, with the bad rows put in their places."""
        start, m = 0, self.table.num_rows
        cast = Stringified(TableRows(self.table), self.stringified).cast  # as the bad rows are
        for batch in batches:
            stop = start + batch.num_rows
            lo = int(np.searchsorted(self.before, start, side="left"))
            hi = int(np.searchsorted(self.before, stop, side="left"))
            yield _placed(cast(batch), self.table.slice(lo, hi - lo), start, self.before[lo:hi])
            start = stop
        lo = int(np.searchsorted(self.before, start, side="left"))
        if lo < m:  # rows that go after the last clean row
            yield self.table.slice(lo, m - lo)


def _placed(clean: pa.Table, bad: pa.Table, start: int, before: np.ndarray) -> pa.Table:
    """Clean rows numbered from `start`; bad row j goes before clean row before[j]."""
    if bad.num_rows == 0:
        return clean
    keys = np.concatenate([np.arange(start, start + clean.num_rows) + 0.0, before - 0.5])
    order = np.argsort(keys, kind="stable")
    return pa.concat_tables([clean, bad]).take(pa.array(order))


class Injector:
    def __init__(
        self,
        rate: float,
        rng: np.random.Generator,
        deaths: pa.Table,
        extract_day: int,
        fake_ids: Callable[[int], list[str]],
    ) -> None:
        self.rate = rate
        self.rng = rng
        dd = deaths.column("date_of_death").cast(pa.int32()).to_numpy()
        keep = dd < extract_day
        self.dead_ids = np.asarray(deaths.column("person_id").to_pylist(), dtype=object)[keep]
        self.dead_days = dd[keep]
        self.extract_day = extract_day
        self.fake_ids = fake_ids
        self.n_fake = 0

    def _fake(self, k: int) -> list[str]:
        ids = self.fake_ids(self.n_fake + k)[self.n_fake :]
        self.n_fake += k
        return ids

    def count(self, n: int) -> int:
        return 0 if n == 0 else max(1, int(round(self.rate * n)))

    def bad_rows(self, spec: Table, clean: Rows) -> BadRows | None:
        """The table's bad rows, made from rows of the clean table picked at random, and
        where each goes: before clean row `before[j]` (sorted; n = after the last row).
        None when no mess is injected into this table."""
        n = clean.num_rows
        if self.rate <= 0 or n == 0:
            return None
        source = Stringified(clean, WRONG_TYPE.get(spec.name))
        pieces: list[tuple[pa.Table, str | None, str]] = []
        for kind in KINDS:
            made = self._make(kind, spec, source)
            if made is not None:
                pieces.append(made)
        labels = [(col or "", kind) for t, col, kind in pieces for _ in range(t.num_rows)]
        bad = pa.concat_tables([p[0] for p in pieces])
        before = np.sort(self.rng.integers(0, n + 1, bad.num_rows))
        return BadRows(bad, before, WRONG_TYPE.get(spec.name), labels)

    def _pick(self, t: Rows, k: int) -> pa.Table:
        return t.take(self.rng.integers(0, t.num_rows, k))

    def _renumber(self, spec: Table, t: pa.Table, kind: str) -> pa.Table:
        col = _id_col(spec)
        if col is None:
            return _replace(t, "person_id", self._fake(t.num_rows))
        ids = [f"{kind[:3].upper()}{self.n_fake + j}" for j in range(t.num_rows)]
        self.n_fake += t.num_rows
        return _replace(t, col, ids)

    def _make(self, kind: str, spec: Table, clean: Rows):  # type: ignore[no-untyped-def]
        k = self.count(clean.num_rows)
        date_col = spec.event_date
        if kind == "duplicate_row":
            return self._pick(clean, k), None, kind
        if kind == "missing_value":
            t = (
                self._renumber(spec, self._pick(clean, k), kind)
                if spec.name != "person"
                else (self._pick(clean, k))
            )
            return _replace(t, "person_id", [""] * k), "person_id", kind
        if kind == "wrong_type" and spec.name in WRONG_TYPE:
            col = WRONG_TYPE[spec.name]
            t = self._renumber(spec, self._pick(clean, k), kind)
            return _replace(t, col, ["n/a"] * k), col, kind
        if kind == "invalid_code" and spec.name in INVALID:
            col, breaker = INVALID[spec.name]
            t = self._renumber(spec, self._pick(clean, k), kind)
            values = [breaker(v or "0000") for v in t.column(col).to_pylist()]
            return _replace(t, col, values), col, kind
        if date_col is None:
            return None
        if kind == "future_date":
            t = self._renumber(spec, self._pick(clean, k), kind)
            days = self.extract_day + self.rng.integers(365, 3650, k)
            t = _replace(t, date_col, pa.array(days.astype(np.int32), type=pa.date32()))
            return self._fix_after(spec, t), date_col, kind
        if kind == "after_death" and spec.name != "death" and len(self.dead_ids):
            t = self._renumber(spec, self._pick(clean, k), kind)
            who = self.rng.integers(0, len(self.dead_ids), k)
            days = np.minimum(self.dead_days[who] + self.rng.integers(1, 366, k), self.extract_day)
            t = _replace(t, "person_id", list(self.dead_ids[who]))
            t = _replace(t, date_col, pa.array(days.astype(np.int32), type=pa.date32()))
            return self._fix_after(spec, t), date_col, kind
        return None

    @staticmethod
    def _fix_after(spec: Table, t: pa.Table) -> pa.Table:
        """Keep later paired dates (discharge, end) empty so only one problem is injected."""
        for _, later in spec.ordered_dates:
            t = _replace(t, later, pa.nulls(t.num_rows, pa.date32()))
        return t


def mess_table(rows: dict[str, list[tuple[int, str, str]]]) -> pa.Table:
    table, number, column, kind = [], [], [], []
    for spec in TABLES:
        for row, col, k in rows.get(spec.name, []):
            table.append(spec.name)
            number.append(row)
            column.append(col or None)
            kind.append(k)
    return pa.Table.from_arrays(
        [pa.array(table, pa.string()), pa.array(number, pa.int64()),
         pa.array(column, pa.string()), pa.array(kind, pa.string())],
        schema=MESS_SCHEMA,
    )  # fmt: skip
