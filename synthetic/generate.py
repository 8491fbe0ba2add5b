"""Generate a county: simulate chunk by chunk, assemble, add mess, write files and truth."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features import codes
from features.contract import TABLES, Table
from synthetic.assemble import person_ids, to_arrow
from synthetic.baseline import prepare
from synthetic.config import CountyConfig, GenerationSummary
from synthetic.mess import Injector, mess_table
from synthetic.outcomes import realised_outcomes
from synthetic.people import build_geography, make_people, rng_for
from synthetic.primary import gp_part, prescription_part
from synthetic.process import TruthRows, simulate
from synthetic.records import (
    Calendar,
    Part,
    ae_ambulance_parts,
    death_part,
    falls_of,
    fire_part,
    hospital_part,
    make_chunk,
    person_part,
    social_care_part,
)

Format = Literal["parquet", "csv"]
Progress = Callable[[str, float], None]
OUTCOME_NAMES = ("falls", "complex_dependency")


def generate(
    config: CountyConfig,
    out_dir: Path,
    fmt: Format = "parquet",
    progress: Progress | None = None,
) -> GenerationSummary:
    """Write out_dir/<table>.<fmt>, out_dir/manifest.json and out_dir/truth/."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, not {fmt!r}")
    began = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    out_dir = Path(out_dir)
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    parts, truth, reference = simulate_county(config, report)
    report("assembling tables", 0.75)
    geo = build_geography(config)
    pids = pa.array(person_ids(config.seed, np.arange(config.people)), type=pa.string())
    tables = {spec.name: to_arrow(spec, parts.pop(spec.name), pids, geo) for spec in TABLES}
    truth_table = _truth_table(truth, pids, config)
    reference_table = _truth_table(reference, pids, config).rename_columns(
        ["person_id", "index_date", "outcome", "reference_probability"]
    )
    report("computing outcomes", 0.82)
    cohort = truth_table.select(["person_id", "index_date", "outcome"])
    outcomes = realised_outcomes(_outcome_sources(tables), cohort, config.end)
    report("writing files", 0.9)
    written, mess_rows = _write_tables(config, tables, out_dir, fmt)
    pq.write_table(truth_table, out_dir / "truth" / "true_risk.parquet")
    pq.write_table(reference_table, out_dir / "truth" / "records_reference.parquet")
    pq.write_table(outcomes, out_dir / "truth" / "outcomes.parquet")
    pq.write_table(mess_rows, out_dir / "truth" / "mess.parquet")
    pq.write_table(_practices(config), out_dir / "truth" / "practices.parquet")
    _write_manifest(config, out_dir, fmt, written, mess_rows.num_rows)
    report("done", 1.0)
    return GenerationSummary(
        out_dir=str(out_dir),
        rows=written,
        mess_rows=mess_rows.num_rows,
        truth_rows=truth_table.num_rows,
        seconds=time.perf_counter() - began,
        index_dates=[d.isoformat() for d in config.index_dates()],
    )


def simulate_county(
    config: CountyConfig, report: Progress
) -> tuple[dict[str, Part], TruthRows, TruthRows]:
    """Simulate every chunk of people: rows of all chunks gathered by table, the truth and
    the records reference."""
    geo = build_geography(config)
    start_abs = config.start.year * 12 + config.start.month - 1
    cal = Calendar.build(start_abs, config.months)
    gathered: dict[str, list[Part]] = {spec.name: [] for spec in TABLES}
    truth, reference = TruthRows(), TruthRows()
    firsts = range(0, config.people, config.chunk_people)
    for k, first in enumerate(firsts):
        count = min(config.chunk_people, config.people - first)
        report("simulating people", 0.7 * k / len(firsts))
        chunk_no = first // config.chunk_people
        p = make_people(config, geo, first, count, start_abs)
        setup = prepare(p, rng_for(config.seed, 3, chunk_no), start_abs, config.structure)
        ev, rows, ref_rows = simulate(
            p,
            setup.base,
            start_abs,
            config.months,
            config.index_months,
            setup.resident0,
            rng_for(config.seed, 4, chunk_no),
            config.structure,
        )
        c = make_chunk(
            p, setup, ev, cal, config.months, start_abs, rng_for(config.seed, 5, chunk_no),
            config.record_prob, config.underrecord_prob,
        )  # fmt: skip
        falls = falls_of(c)
        emergency, crisis_care = hospital_part(c, falls)
        ae, amb = ae_ambulance_parts(c, falls, emergency)
        gathered["person"].append(person_part(c))
        gathered["death"].append(death_part(c))
        gathered["hospital_episode"].append(emergency)
        gathered["ae_attendance"].append(ae)
        gathered["ambulance_incident"].append(amb)
        gathered["social_care"].append(social_care_part(c, falls, emergency, crisis_care))
        gathered["fire_home_visit"].append(fire_part(c))
        gathered["gp_event"].append(gp_part(c, falls))
        gathered["prescription"].append(prescription_part(c))
        truth.extend(rows, p.index)
        reference.extend(ref_rows, p.index)
    parts: dict[str, Part] = {}
    for name in list(gathered):
        chunks = gathered.pop(name)  # free each table's chunks as soon as it is joined
        parts[name] = {key: np.concatenate([pt[key] for pt in chunks]) for key in chunks[0]}
        del chunks
    return parts, truth, reference


def _practices(config: CountyConfig) -> pa.Table:
    """Which practices under-record frailty codes (a realism setting, not an error)."""
    geo = build_geography(config)
    return pa.table(
        {
            "practice_code": pa.array(geo.practice_codes, type=pa.string()),
            "underrecords_frailty": pa.array(geo.practice_underrecords, type=pa.bool_()),
        }
    )


def _outcome_sources(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The tables the outcome definitions read (GP entries cut to fall codes: less memory)."""
    gp = tables["gp_event"]
    falls = pc.is_in(gp.column("snomed_code"), pa.array(sorted(codes.FALL_SNOMED)))
    sources = {name: t for name, t in tables.items() if name not in ("gp_event", "prescription")}
    sources["gp_event"] = gp.filter(falls)
    return sources


def _truth_table(truth: TruthRows, pids: pa.Array, config: CountyConfig) -> pa.Table:
    person = np.concatenate(truth.person)
    month = np.concatenate(truth.month)
    outcome = np.concatenate(truth.outcome)
    prob = np.concatenate(truth.prob)
    order = np.lexsort((person, outcome, month))
    days = np.array([(d - date(1970, 1, 1)).days for d in config.index_dates()], dtype=np.int32)
    month_pos = {m: i for i, m in enumerate(config.index_months)}
    day = (
        days[np.array([month_pos[m] for m in month[order].tolist()], dtype=np.int64)]
        if len(order)
        else np.zeros(0, dtype=np.int32)
    )
    return pa.table(
        {
            "person_id": pids.take(pa.array(person[order])),
            "index_date": pa.array(day, type=pa.date32()),
            "outcome": pa.array(np.array(OUTCOME_NAMES)[outcome[order]], type=pa.string()),
            "true_probability": pa.array(np.clip(prob[order], 0.0, 1.0), type=pa.float64()),
        }
    )


def _write_tables(
    config: CountyConfig, tables: dict[str, pa.Table], out_dir: Path, fmt: Format
) -> tuple[dict[str, int], pa.Table]:
    extract_day = (config.end - date(1970, 1, 1)).days
    injector = Injector(
        config.mess_rate,
        rng_for(config.seed, 6),
        tables["death"],
        extract_day,
        lambda k: list(person_ids(config.seed, np.arange(config.people, config.people + k))),
    )
    written: dict[str, int] = {}
    rows: dict[str, list[tuple[int, str, str]]] = {}
    for spec in TABLES:
        table, bad = injector.table(spec, tables.pop(spec.name))
        rows[spec.name] = bad
        _write(table, spec, out_dir, fmt)
        written[spec.name] = table.num_rows
        del table
    return written, mess_table(rows)


def _write(table: pa.Table, spec: Table, out_dir: Path, fmt: Format) -> None:
    path = out_dir / f"{spec.name}.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, compression="snappy")
    else:
        pacsv.write_csv(table, path)


def _write_manifest(
    config: CountyConfig, out_dir: Path, fmt: Format, rows: dict[str, int], mess: int
) -> None:
    manifest = {
        "generator": "carerisk.synthetic",
        "format": fmt,
        "extract_date": config.end.isoformat(),
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "seed": config.seed,
        "people": config.people,
        "structure": config.structure,
        "mess_rate": config.mess_rate,
        "underrecording_practice_share": config.underrecording_practice_share,
        "rows": rows,
        "mess_rows": mess,
        "index_dates": [d.isoformat() for d in config.index_dates()],
        "truth": {
            "true_risk": "truth/true_risk.parquet",
            "records_reference": "truth/records_reference.parquet",
            "outcomes": "truth/outcomes.parquet",
            "mess": "truth/mess.parquet",
            "practices": "truth/practices.parquet",
        },
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out_dir / "manifest.json").write_text(text)
