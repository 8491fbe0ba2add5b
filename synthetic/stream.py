"""Writing a county piece by piece: tables appended chunk by chunk, rows read back by position,
and runs sorted out of memory, so the memory a county needs follows the chunk, not the county."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

Format = Literal["parquet", "csv"]
BATCH_ROWS = 262_144  # rows read or sorted at a time
SORT_MEMORY = "1GB"  # DuckDB's limit while sorting runs; it spills to disk beyond it


class Sink:
    """One output file, written as a sequence of tables (CSV: one header)."""

    def __init__(self, path: Path, fmt: Format) -> None:
        self.path = path
        self.fmt = fmt
        self.rows = 0
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._open(table.schema)
        assert self._writer is not None
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self, schema: pa.Schema) -> int:
        """Close the file (an empty one with `schema` when nothing was written); its rows."""
        if self._writer is None:
            self._open(schema)
        assert self._writer is not None
        self._writer.close()
        return self.rows

    def _open(self, schema: pa.Schema) -> None:
        if self.fmt == "parquet":
            self._writer = pq.ParquetWriter(self.path, schema, compression="snappy")
        else:
            self._writer = pacsv.CSVWriter(self.path, schema)


class ParquetRows:
    """A Parquet file's rows, taken by position one row group at a time."""

    def __init__(self, path: Path) -> None:
        self.file = pq.ParquetFile(path)

    @property
    def num_rows(self) -> int:
        return int(self.file.metadata.num_rows)

    def take(self, indices: np.ndarray) -> pa.Table:
        """The rows at `indices` (any order, repeats allowed), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        wanted = indices[order]
        pieces, start = [], 0
        for group in range(self.file.num_row_groups):
            stop = start + self.file.metadata.row_group(group).num_rows
            lo, hi = np.searchsorted(wanted, [start, stop])
            if hi > lo:
                rows = self.file.read_row_group(group)
                pieces.append(rows.take(pa.array(wanted[lo:hi] - start)))
            start = stop
        got = pa.concat_tables(pieces) if pieces else self.file.schema_arrow.empty_table()
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return got.take(pa.array(back))

    def batches(self) -> Iterator[pa.Table]:
        for batch in self.file.iter_batches(batch_size=BATCH_ROWS):
            yield pa.Table.from_batches([batch])


class Runs:
    """Parquet files of one sorted output, written a chunk at a time, to be merged later."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            pq.write_table(table, self.folder / f"run_{self.count:06d}.parquet")
            self.count += 1

    def write_sorted(self, dest: Path, order_by: str, schema: pa.Schema, spill: Path) -> int:
        """All runs' rows sorted by `order_by` (a total order) into `dest` with `schema`'s
        columns; DuckDB sorts in bounded memory and spills to `spill`; the rows written."""
        writer = pq.ParquetWriter(dest, schema, compression="snappy")
        rows = 0
        paths = sorted(str(p) for p in self.folder.glob("run_*.parquet"))
        if paths:
            spill.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(config=_sort_settings(spill))
            try:
                columns = ", ".join(f'"{name}"' for name in schema.names)
                sql = f"SELECT {columns} FROM read_parquet(?) ORDER BY {order_by}"
                reader = con.sql(sql, params=[paths]).to_arrow_reader(BATCH_ROWS)
                for batch in reader:
                    writer.write_table(pa.Table.from_batches([batch]).cast(schema))
                    rows += batch.num_rows
            finally:
                con.close()
        writer.close()
        return rows


def _sort_settings(spill: Path) -> dict[str, str | bool | int | float | list[str]]:
    return {"memory_limit": SORT_MEMORY, "threads": 2, "temp_directory": str(spill)}
