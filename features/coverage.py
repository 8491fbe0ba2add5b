"""What an extract's source lacks: tables absent and columns not supplied, from its manifest.

An importer writes a `coverage` block into the extract's manifest.json: for each of the nine
contract tables its state (`mapped`, `proxy` or `absent`), and for a mapped table the columns
its source does not supply. An extract without the block has every table mapped and every
column supplied. `carerisk load` keeps the coverage in the load log; later stages read the
store's coverage (`store_coverage`) to leave out what the source never held: features whose
sources are all absent are missing (never zero) and never a reason, an outcome whose label
needs an absent table is not trained, a descriptor not supplied is left out of the fairness
tables, and a model is served only from a store with the coverage it was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb

from features import contract

STATES: tuple[str, ...] = ("mapped", "proxy", "absent")
ABSENT = "absent"
# The fairness descriptors read from a column that may be not supplied.
DESCRIPTOR_COLUMNS: dict[str, tuple[str, str]] = {
    "imd_quintile": ("person", "imd_decile"),
    "district": ("person", "district"),
    "gp_system": ("person", "gp_system"),
}


class CoverageError(ValueError):
    """A coverage block that breaks the contract, or two coverages that disagree."""


@dataclass(frozen=True)
class Coverage:
    """The tables an extract's source lacks (with why) and the columns it does not supply."""

    absent: Mapping[str, str] = field(default_factory=dict)  # table -> reason
    not_supplied: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # table -> columns
    block: Mapping[str, Any] = field(default_factory=dict)  # the manifest's block, as written

    @property
    def complete(self) -> bool:
        """Every table mapped and every column supplied."""
        return not self.absent and not any(self.not_supplied.values())

    def is_absent(self, table: str) -> bool:
        return table in self.absent

    def state(self, table: str) -> str:
        """mapped, proxy or absent."""
        if table in self.absent:
            return ABSENT
        entry = self.block.get("tables", {}).get(table, {})
        return str(entry.get("state", "mapped")) if isinstance(entry, Mapping) else "mapped"

    def supplied(self, table: str, column: str) -> bool:
        return table not in self.absent and column not in self.not_supplied.get(table, ())

    def missing_features(self, features: Iterable[Any]) -> list[str]:
        """Features the source cannot give: every source table absent, or a column they read
        not supplied. They are missing (NULL) for everyone, never zero."""
        return [f.name for f in features if self.feature_missing(f)]

    def feature_missing(self, feature: Any) -> bool:
        sources = tuple(feature.sources)
        if sources and all(self.is_absent(t) for t in sources):
            return True
        return any(not self.supplied(*_split(read)) for read in feature.reads)

    def partial_features(self, features: Iterable[Any]) -> list[str]:
        """Features computed from some of their sources only (the others absent)."""
        return [
            f.name
            for f in features
            if not self.feature_missing(f) and any(self.is_absent(t) for t in f.sources)
        ]

    def missing_descriptors(self) -> list[str]:
        """Fairness descriptors whose column the source does not supply."""
        return [d for d, (t, c) in DESCRIPTOR_COLUMNS.items() if not self.supplied(t, c)]

    def summary(self) -> dict[str, Any]:
        """What a model records of the data it was trained on, and a service compares."""
        return {
            "absent": dict(sorted(self.absent.items())),
            "not_supplied": {t: list(c) for t, c in sorted(self.not_supplied.items()) if c},
        }

    def model_record(self, features: Iterable[Any]) -> dict[str, Any]:
        """What a model keeps of the coverage it was trained on (models.bundle)."""
        chosen = list(features)
        return {
            **self.summary(),
            "missing_features": self.missing_features(chosen),
            "partial_features": self.partial_features(chosen),
            "missing_descriptors": self.missing_descriptors(),
        }

    def to_json(self) -> str:
        return json.dumps({**self.summary(), "block": self.block}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Coverage:
        if not text:
            return cls()
        data = json.loads(text)
        return cls.from_summary(data, data.get("block", {}))

    @classmethod
    def from_summary(
        cls, data: Mapping[str, Any], block: Mapping[str, Any] | None = None
    ) -> Coverage:
        return cls(
            absent=dict(data.get("absent", {})),
            not_supplied={t: tuple(c) for t, c in data.get("not_supplied", {}).items()},
            block=dict(block or {}),
        )

    def sentences(self) -> list[str]:
        """The coverage in plain words, one sentence per table that lacks something."""
        out = [f"{t} is absent from the source: {why}." for t, why in sorted(self.absent.items())]
        for t, cols in sorted(self.not_supplied.items()):
            if cols:
                out.append(f"{t} is mapped without {', '.join(cols)} (not supplied).")
        return out


def left_out_descriptors(record: Mapping[str, Any] | None) -> dict[str, str]:
    """Descriptor -> why the fairness tables leave it out, from a model's coverage record."""
    out = {}
    for name in (record or {}).get("missing_descriptors", ()):
        table, column = DESCRIPTOR_COLUMNS[name]
        out[name] = f"left out: the source does not supply {table}.{column}"
    return out


def card_lines(record: Mapping[str, Any] | None) -> list[str]:
    """The model card's account of what the training source lacked, in plain words; empty
    when it lacked nothing (or the model predates the record)."""
    coverage = Coverage.from_summary(record or {})
    lines = coverage.sentences()
    missing = list((record or {}).get("missing_features", ()))
    partial = list((record or {}).get("partial_features", ()))
    if missing:
        lines.append(
            "Missing for everyone (the source cannot give them; never a reason): "
            + ", ".join(missing)
            + "."
        )
    if partial:
        lines.append(
            "Counted from the sources present only (the others absent): " + ", ".join(partial) + "."
        )
    return lines


def label_refusal(outcome: Any, coverage: Coverage) -> str | None:
    """Why `outcome` cannot be trained on a store with this coverage: a table its label
    needs is absent. None when every table it needs is there."""
    lacking = [t for t in outcome.needs if coverage.is_absent(t)]
    if not lacking:
        return None
    why = "; ".join(f"{t}: {coverage.absent[t]}" for t in lacking)
    return (
        f"{outcome.title.lower()} cannot be trained on this store: its label needs "
        f"{' and '.join(lacking)}, which the source does not hold ({why})"
    )


def _split(read: str) -> tuple[str, str]:
    table, _, column = read.partition(".")
    return table, column


def may_be_unsupplied(table: str) -> tuple[str, ...]:
    """The columns of a contract table that a source may leave not supplied."""
    return tuple(c.name for c in contract.table(table).columns if c.may_be_unsupplied)


def from_block(block: Any, where: str) -> Coverage:
    """A manifest's coverage block, checked against the contract; `where` names the file."""
    if not isinstance(block, Mapping) or not isinstance(block.get("tables"), Mapping):
        raise CoverageError(f"{where}: coverage must be an object with a `tables` object")
    tables = block["tables"]
    unknown = sorted(set(tables) - set(contract.TABLE_NAMES))
    missing = [t for t in contract.TABLE_NAMES if t not in tables]
    if unknown or missing:
        raise CoverageError(
            f"{where}: coverage.tables must list the nine contract tables exactly "
            f"(unknown: {unknown or 'none'}; missing: {missing or 'none'})"
        )
    absent: dict[str, str] = {}
    not_supplied: dict[str, tuple[str, ...]] = {}
    for name in contract.TABLE_NAMES:
        entry = tables[name]
        state = entry.get("state") if isinstance(entry, Mapping) else None
        if state not in STATES:
            raise CoverageError(
                f"{where}: coverage.tables.{name}.state {state!r} is not one of {', '.join(STATES)}"
            )
        if state == ABSENT:
            absent[name] = str(entry.get("reason") or "no source table holds it")
            continue
        not_supplied[name] = _not_supplied(name, entry.get("not_supplied", []), where)
    if "person" in absent:
        raise CoverageError(f"{where}: coverage.tables.person cannot be absent")
    _check_sources(block.get("sources", {}), where)
    return Coverage(absent, {t: c for t, c in not_supplied.items() if c}, dict(block))


def _check_sources(sources: Any, where: str) -> None:
    """Every source table read is accounted for: read = written + the sum of dropped."""
    if not isinstance(sources, Mapping):
        raise CoverageError(f"{where}: coverage.sources must be an object")
    for name, counts in sources.items():
        numbers = _counts(counts)
        if numbers is None:
            raise CoverageError(
                f"{where}: coverage.sources.{name} needs whole numbers read, written and "
                "dropped (reason -> rows)"
            )
        read, written, lost = numbers
        if read != written + lost:
            raise CoverageError(
                f"{where}: coverage.sources.{name}: {read:,} rows read but {written:,} written "
                f"and {lost:,} dropped; every row read must be written or dropped with a reason"
            )


def _counts(counts: Any) -> tuple[int, int, int] | None:
    """(read, written, dropped in all) of one source table's entry; None when malformed."""
    if not isinstance(counts, Mapping):
        return None
    dropped = counts.get("dropped", {})
    if not isinstance(dropped, Mapping):
        return None
    values: list[Any] = [counts.get("read"), counts.get("written"), *dropped.values()]
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if len(numbers) != len(values):
        return None
    return numbers[0], numbers[1], sum(numbers[2:])


def _not_supplied(table: str, columns: Any, where: str) -> tuple[str, ...]:
    allowed = may_be_unsupplied(table)
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise CoverageError(
            f"{where}: coverage.tables.{table}.not_supplied must be a list of names"
        )
    wrong = [c for c in columns if c not in allowed]
    if wrong:
        raise CoverageError(
            f"{where}: coverage.tables.{table}.not_supplied lists {wrong}; only "
            f"{list(allowed) or 'no columns'} of {table} may be not supplied"
        )
    return tuple(c for c in contract.table(table).column_names if c in columns)


def effective_table(spec: contract.Table, coverage: Coverage) -> contract.Table:
    """The table as this extract is checked: a not-supplied column may be empty."""
    from dataclasses import replace

    gone = coverage.not_supplied.get(spec.name, ())
    if not gone:
        return spec
    columns = tuple(replace(c, nullable=True) if c.name in gone else c for c in spec.columns)
    return replace(spec, columns=columns)


def agree(stored: Coverage, stated: Coverage, where: str) -> None:
    """An increment states the coverage its store holds already, or none at all."""
    if stored.summary() != stated.summary():
        raise CoverageError(
            f"{where}: this increment's coverage differs from the store's; a change of "
            f"coverage needs a full extract. The increment: {describe(stated)} The store: "
            f"{describe(stored)}"
        )


def describe(coverage: Coverage) -> str:
    """What the source lacks in sentences, or that it lacks nothing."""
    if coverage.complete:
        return "every table mapped and every column supplied."
    return " ".join(coverage.sentences())


def store_coverage(con: duckdb.DuckDBPyConnection, prefix: str = "") -> Coverage:
    """The coverage of the store's latest load (`prefix`: e.g. "store.main." for an attached
    store); complete for a store never loaded or loaded before coverage was recorded."""
    try:
        row = con.execute(
            f"SELECT coverage FROM {prefix}load_log WHERE load_id = "
            f"(SELECT max(load_id) FROM {prefix}load_log) LIMIT 1"
        ).fetchone()
    except (duckdb.CatalogException, duckdb.BinderException):
        return Coverage()
    return Coverage.from_json(row[0] if row else None)


def read_store_coverage(store_path: Any) -> Coverage:
    """`store_coverage` of a store file (read-only)."""
    from pathlib import Path

    path = Path(store_path)
    if not path.exists():
        return Coverage()
    with duckdb.connect(str(path), read_only=True) as con:
        return store_coverage(con)


def compare(trained: Mapping[str, Any] | None, serving: Coverage) -> str | None:
    """Why a model trained on `trained` (a Coverage summary) cannot score a store with
    `serving`'s coverage; None when they match. A model trained before coverage was recorded
    counts as trained on a complete source."""
    model = Coverage.from_summary(trained or {})
    if model.summary() == serving.summary():
        return None
    return (
        "the data it was trained on and this store's differ in what their source lacks; train "
        f"the model again on this store. Trained on: {describe(model)} This store: "
        f"{describe(serving)}"
    )
