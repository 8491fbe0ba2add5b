"""Generate a county a chunk of people at a time: simulate, assemble, append to the files; then
merge the truth and add the mess. Memory follows the chunk, not the county."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.codes import packaged_codes
from features.contract import TABLES, Table
from synthetic.assemble import ARROW_TYPES, person_ids, to_arrow
from synthetic.baseline import prepare
from synthetic.config import CountyConfig, GenerationSummary, add_months
from synthetic.mess import Injector, mess_table
from synthetic.outcomes import cohort_rows, realised_outcomes
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
from synthetic.stream import Format, ParquetRows, Runs, Sink

Progress = Callable[[str, float], None]
OUTCOME_NAMES = ("falls", "complex_dependency")
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("person_id", pa.string()),
        pa.field("index_date", pa.date32()),
        pa.field("outcome", pa.string()),
        pa.field("true_probability", pa.float64()),
    ]
)
# the truth files merged from every chunk's runs: the order of the whole county, the columns
TRUTH_RUNS: dict[str, tuple[str, pa.Schema]] = {
    "true_risk": ("index_date, _outcome, _seq", TRUTH_SCHEMA),
    "records_reference": (
        "index_date, _outcome, _seq",
        TRUTH_SCHEMA.set(3, pa.field("reference_probability", pa.float64())),
    ),
    "outcomes": (
        "index_date, outcome, person_id",
        pa.schema(
            [
                pa.field("person_id", pa.string()),
                pa.field("index_date", pa.date32()),
                pa.field("outcome", pa.string()),
                pa.field("event", pa.int8()),
                pa.field("died_before_event", pa.int8()),
            ]
        ),
    ),
}


def generate(
    config: CountyConfig,
    out_dir: Path,
    fmt: Format = "parquet",
    progress: Progress | None = None,
) -> GenerationSummary:
    """Write out_dir/<table>.<fmt>, out_dir/manifest.json and out_dir/truth/, a chunk of
    people at a time (memory follows config.chunk_people, not config.people)."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, not {fmt!r}")
    began = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    out_dir = Path(out_dir)
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    scratch = out_dir / ".scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        written, mess_rows, truth_rows = _stream(config, out_dir, fmt, scratch, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pq.write_table(_practices(config), out_dir / "truth" / "practices.parquet")
    _write_manifest(config, out_dir, fmt, written, mess_rows)
    report("done", 1.0)
    return GenerationSummary(
        out_dir=str(out_dir),
        rows=written,
        mess_rows=mess_rows,
        truth_rows=truth_rows,
        seconds=time.perf_counter() - began,
        index_dates=[d.isoformat() for d in config.index_dates()],
    )


def _stream(
    config: CountyConfig, out_dir: Path, fmt: Format, scratch: Path, report: Progress
) -> tuple[dict[str, int], int, int]:
    """Every chunk's rows appended to the tables (clean ones under scratch when mess is to be
    added) and its truth to sorted runs; then the truth merged and the mess added."""
    messy = config.mess_rate > 0
    clean_fmt: Format = "parquet" if messy else fmt
    clean_dir = scratch / "clean" if messy else out_dir
    clean_dir.mkdir(parents=True, exist_ok=True)
    sinks = {spec.name: Sink(clean_dir / f"{spec.name}.{clean_fmt}", clean_fmt) for spec in TABLES}
    runs = {name: Runs(scratch / name) for name in TRUTH_RUNS}
    geo = build_geography(config)
    numbers = {spec.name: 0 for spec in TABLES}
    truth_rows = 0
    for chunk in simulate_chunks(config, report):
        pids = pa.array(person_ids(config.seed, chunk.people), type=pa.string())
        first = int(chunk.people[0])
        tables: dict[str, pa.Table] = {}
        for spec in TABLES:
            part = chunk.parts.pop(spec.name)
            t = to_arrow(spec, part, pids, geo, first, numbers[spec.name] + 1)
            numbers[spec.name] += t.num_rows
            sinks[spec.name].write(t)
            tables[spec.name] = t
        truth_rows += _add_truth(config, chunk, pids, tables, runs, truth_rows)
    written = {spec.name: sinks[spec.name].close(_schema(spec)) for spec in TABLES}
    report("sorting the truth", 0.75)
    truth_dir = out_dir / "truth"
    for name, (order_by, schema) in TRUTH_RUNS.items():
        runs[name].write_sorted(truth_dir / f"{name}.parquet", order_by, schema, scratch / "spill")
    if not messy:
        pq.write_table(mess_table({}), truth_dir / "mess.parquet")
        return written, 0, truth_rows
    report("adding mess", 0.85)
    written, mess = _add_mess(config, clean_dir, out_dir, fmt)
    pq.write_table(mess, truth_dir / "mess.parquet")
    return written, mess.num_rows, truth_rows


def _add_truth(
    config: CountyConfig,
    chunk: Chunk,
    pids: pa.Array,
    tables: dict[str, pa.Table],
    runs: dict[str, Runs],
    seq_from: int,
) -> int:
    """One chunk's truth, records reference and realised outcomes as runs (with the keys
    that merge them into the county's order); the number of truth rows. The realised outcomes
    are the project's labels over the chunk's clean records, for each outcome's cohort by its
    own rule; the truth keeps the same rows."""
    first = int(chunk.people[0])
    outcomes = realised_outcomes(_outcome_sources(tables), config.index_dates(), config.end)
    truth, reference = cohort_truth(chunk.truth, chunk.reference, pids, config, outcomes, first)
    runs["outcomes"].add(outcomes)
    runs["true_risk"].add(_with_keys(truth, seq_from))
    reference = reference.rename_columns(TRUTH_RUNS["records_reference"][1].names)
    runs["records_reference"].add(_with_keys(reference, seq_from))
    return int(truth.num_rows)


def _with_keys(t: pa.Table, seq_from: int) -> pa.Table:
    """A chunk's truth (ordered by date, outcome, person) with its merge keys: the outcome's
    number and a sequence rising with the person across chunks (people are numbered by chunk)."""
    falls = pc.equal(t.column("outcome"), OUTCOME_NAMES[0])
    number = pc.if_else(falls, 0, 1).cast(pa.int8())
    seq = pa.array(np.arange(seq_from, seq_from + t.num_rows, dtype=np.int64))
    return t.append_column("_outcome", number).append_column("_seq", seq)


def _add_mess(
    config: CountyConfig, clean_dir: Path, out_dir: Path, fmt: Format
) -> tuple[dict[str, int], pa.Table]:
    """Each clean table copied to out_dir with its bad rows put in (as Injector places them)."""
    extract_day = (config.end - date(1970, 1, 1)).days
    injector = Injector(
        config.mess_rate,
        rng_for(config.seed, 6),
        pq.read_table(clean_dir / "death.parquet"),
        extract_day,
        lambda k: list(person_ids(config.seed, np.arange(config.people, config.people + k))),
    )
    written: dict[str, int] = {}
    rows: dict[str, list[tuple[int, str, str]]] = {}
    for spec in TABLES:
        clean_path = clean_dir / f"{spec.name}.parquet"
        clean = ParquetRows(clean_path)
        bad = injector.bad_rows(spec, clean)
        sink = Sink(out_dir / f"{spec.name}.{fmt}", fmt)
        for piece in bad.interleave(clean.batches()) if bad else clean.batches():
            sink.write(piece)
        written[spec.name] = sink.close(clean.file.schema_arrow)
        rows[spec.name] = bad.mess_rows() if bad else []
        del clean
        clean_path.unlink()
    return written, mess_table(rows)


def _schema(spec: Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.kind]) for c in spec.columns])


@dataclass
class Chunk:
    """One chunk of people simulated: their global numbers, rows by table, truth, reference."""

    people: np.ndarray
    parts: dict[str, Part]
    truth: TruthRows
    reference: TruthRows


def simulate_chunks(
    config: CountyConfig, report: Progress, index_months: list[int] | None = None
) -> Iterator[Chunk]:
    """Simulate the county a chunk of people at a time: each chunk's rows by table, its
    truth and its records reference (at `index_months`, months since the start; the config's
    own index months unless given), person numbers global."""
    months_of_truth = config.index_months if index_months is None else index_months
    geo = build_geography(config)
    start_abs = config.start.year * 12 + config.start.month - 1
    cal = Calendar.build(start_abs, config.months)
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
            months_of_truth,
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
        parts = {
            "person": person_part(c),
            "death": death_part(c),
            "hospital_episode": emergency,
            "ae_attendance": ae,
            "ambulance_incident": amb,
            "social_care": social_care_part(c, falls, emergency, crisis_care),
            "fire_home_visit": fire_part(c),
            "gp_event": gp_part(c, falls),
            "prescription": prescription_part(c),
        }
        truth, reference = TruthRows(), TruthRows()
        truth.extend(rows, p.index)
        reference.extend(ref_rows, p.index)
        yield Chunk(np.asarray(p.index), parts, truth, reference)


def simulate_county(
    config: CountyConfig, report: Progress, index_months: list[int] | None = None
) -> tuple[dict[str, Part], TruthRows, TruthRows]:
    """Simulate every chunk of people: rows of all chunks gathered by table, the truth and
    the records reference (at `index_months`, months since the start; the config's own
    index months unless given)."""
    gathered: dict[str, list[Part]] = {spec.name: [] for spec in TABLES}
    truth, reference = TruthRows(), TruthRows()
    for chunk in simulate_chunks(config, report, index_months):
        for name, part in chunk.parts.items():
            gathered[name].append(part)
        truth.add(chunk.truth)
        reference.add(chunk.reference)
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
    falls = pc.is_in(gp.column("snomed_code"), pa.array(sorted(packaged_codes().fall_snomed)))
    sources = {name: t for name, t in tables.items() if name not in ("gp_event", "prescription")}
    sources["gp_event"] = gp.filter(falls)
    return sources


def cohort_truth(
    truth: TruthRows,
    reference: TruthRows,
    pids: pa.Array,
    config: CountyConfig,
    outcomes: pa.Table,
    first_person: int = 0,
    index_months: list[int] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """The truth and records reference tables cut to the cohorts of `outcomes`."""
    true_risk = _truth_table(truth, pids, config, index_months, first_person)
    keep = cohort_rows(true_risk, outcomes)
    ref = _truth_table(reference, pids, config, index_months, first_person)
    return true_risk.filter(keep), ref.filter(keep)


def _truth_table(
    truth: TruthRows,
    pids: pa.Array,
    config: CountyConfig,
    index_months: list[int] | None = None,
    first_person: int = 0,
) -> pa.Table:
    """Truth rows by index date, outcome and person; `pids[i]` is person first_person + i."""
    index_months = config.index_months if index_months is None else index_months
    person = np.concatenate(truth.person)
    month = np.concatenate(truth.month)
    outcome = np.concatenate(truth.outcome)
    prob = np.concatenate(truth.prob)
    order = np.lexsort((person, outcome, month))
    dates = [add_months(config.start, m) for m in index_months]
    days = np.array([(d - date(1970, 1, 1)).days for d in dates], dtype=np.int32)
    month_pos = {m: i for i, m in enumerate(index_months)}
    day = (
        days[np.array([month_pos[m] for m in month[order].tolist()], dtype=np.int64)]
        if len(order)
        else np.zeros(0, dtype=np.int32)
    )
    return pa.table(
        {
            "person_id": pids.take(pa.array(person[order] - first_person)),
            "index_date": pa.array(day, type=pa.date32()),
            "outcome": pa.array(np.array(OUTCOME_NAMES)[outcome[order]], type=pa.string()),
            "true_probability": pa.array(np.clip(prob[order], 0.0, 1.0), type=pa.float64()),
        }
    )


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
        "kind": "full",  # every row of the window: a later load retires the rows it lacks
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
