"""The generator as it was before streaming (whole county in memory): the reference the
streamed output must equal row for row. Kept only for tests/synthetic/test_stream.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import TABLES
from synthetic.assemble import person_ids, to_arrow
from synthetic.config import CountyConfig
from synthetic.generate import (
    Format,
    _outcome_sources,
    _practices,
    cohort_truth,
    simulate_county,
)
from synthetic.mess import KINDS, WRONG_TYPE, Injector, _stringify, mess_table
from synthetic.outcomes import realised_outcomes
from synthetic.people import build_geography, rng_for


def generate_in_memory(config: CountyConfig, out_dir: Path, fmt: Format = "parquet") -> None:
    """Write the tables and truth files as the in-memory generator did."""
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    parts, truth, reference = simulate_county(config, lambda stage, fraction: None)
    geo = build_geography(config)
    pids = pa.array(person_ids(config.seed, np.arange(config.people)), type=pa.string())
    tables = {spec.name: to_arrow(spec, parts.pop(spec.name), pids, geo) for spec in TABLES}
    outcomes = realised_outcomes(_outcome_sources(tables), config.index_dates(), config.end)
    truth_table, reference_table = cohort_truth(truth, reference, pids, config, outcomes)
    reference_table = reference_table.rename_columns(
        ["person_id", "index_date", "outcome", "reference_probability"]
    )
    extract_day = (config.end - date(1970, 1, 1)).days
    injector = Injector(
        config.mess_rate,
        rng_for(config.seed, 6),
        tables["death"],
        extract_day,
        lambda k: list(person_ids(config.seed, np.arange(config.people, config.people + k))),
    )
    rows: dict[str, list[tuple[int, str, str]]] = {}
    for spec in TABLES:
        table, bad = _inject(injector, spec, tables.pop(spec.name))
        rows[spec.name] = bad
        path = out_dir / f"{spec.name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, path, compression="snappy")
        else:
            pacsv.write_csv(table, path)
    pq.write_table(truth_table, out_dir / "truth" / "true_risk.parquet")
    pq.write_table(reference_table, out_dir / "truth" / "records_reference.parquet")
    pq.write_table(outcomes, out_dir / "truth" / "outcomes.parquet")
    pq.write_table(mess_table(rows), out_dir / "truth" / "mess.parquet")
    pq.write_table(_practices(config), out_dir / "truth" / "practices.parquet")


def _inject(injector: Injector, spec, clean: pa.Table):  # type: ignore[no-untyped-def]
    """Injector.table as it was: bad rows made from the whole table, placed at random."""
    n = clean.num_rows
    if injector.rate <= 0 or n == 0:
        return clean, []
    if spec.name in WRONG_TYPE:
        clean = _stringify(clean, WRONG_TYPE[spec.name])
    pieces = []
    for kind in KINDS:
        made = injector._make(kind, spec, clean)
        if made is not None:
            pieces.append(made)
    bad = [p[0] for p in pieces]
    labels = [(col, kind) for t, col, kind in pieces for _ in range(t.num_rows)]
    combined = pa.concat_tables([clean, *bad])
    m = combined.num_rows - n
    ins = np.sort(injector.rng.integers(0, n + 1, m)).astype(float) - 0.5
    keys = np.concatenate([np.arange(n, dtype=float), ins + np.arange(m) * 1e-9])
    order = np.argsort(keys, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    out = combined.take(pa.array(order))
    rows = [(int(position[n + j]), labels[j][0] or "", labels[j][1]) for j in range(m)]
    return out, rows
