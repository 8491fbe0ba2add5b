"""The streamed generator writes what the in-memory one wrote: every table and truth file row
for row (CSV byte for byte), at two chunk sizes, clean and messy, parquet and csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthetic import CountyConfig, generate
from synthetic.stream import ParquetRows, Runs
from tests.synthetic._in_memory import generate_in_memory


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("chunk_people", "mess_rate", "fmt"),
    [(1_000, 0.01, "parquet"), (1_000, 0.0, "csv"), (1_500, 0.02, "csv"), (1_500, 0.0, "parquet")],
)
def test_streamed_county_equals_the_in_memory_one(
    tmp_path: Path, chunk_people: int, mess_rate: float, fmt: str
) -> None:
    config = CountyConfig(people=2_500, seed=3, chunk_people=chunk_people, mess_rate=mess_rate)
    generate(config, tmp_path / "streamed", fmt)  # type: ignore[arg-type]
    generate_in_memory(config, tmp_path / "whole", fmt)  # type: ignore[arg-type]
    streamed, whole = tmp_path / "streamed", tmp_path / "whole"
    assert _files(streamed) == sorted([*_files(whole), "manifest.json"])  # no scratch left
    for name in _files(whole):
        a, b = streamed / name, whole / name
        if name.endswith(".parquet"):
            got, want = pq.read_table(a), pq.read_table(b)
            assert got.schema == want.schema, name
            assert got.num_rows == want.num_rows, name
            assert got.equals(want), name
        else:
            assert a.read_bytes() == b.read_bytes(), name
    mess = pq.read_table(streamed / "truth" / "mess.parquet").num_rows
    assert (mess > 0) == (mess_rate > 0)


def test_rows_are_taken_by_position_across_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table({"x": np.arange(1_000), "s": [f"r{i}" for i in range(1_000)]})
    pq.write_table(table, path, row_group_size=64)
    rows = ParquetRows(path)
    picks = np.array([999, 0, 63, 64, 64, 500, 1])
    assert rows.num_rows == 1_000
    assert rows.take(picks).equals(table.take(pa.array(picks)))
    assert pa.concat_tables(rows.batches()).equals(table)


def test_runs_merge_into_one_sorted_file_in_bounded_memory(tmp_path: Path) -> None:
    runs = Runs(tmp_path / "runs")
    rng = np.random.default_rng(1)
    parts = [
        pa.table({"k": rng.integers(0, 50, 2_000), "seq": np.arange(i * 2_000, (i + 1) * 2_000)})
        for i in range(3)
    ]
    for part in parts:
        runs.add(part)
    runs.add(parts[0].slice(0, 0))  # an empty run is no file
    schema = pa.schema([pa.field("seq", pa.int64()), pa.field("k", pa.int64())])
    rows = runs.write_sorted(tmp_path / "out.parquet", "k, seq", schema, tmp_path / "spill")
    got = pq.read_table(tmp_path / "out.parquet")
    whole = pa.concat_tables(parts).sort_by([("k", "ascending"), ("seq", "ascending")])
    assert rows == 6_000 and got.schema == schema
    assert got.equals(whole.select(["seq", "k"]))
