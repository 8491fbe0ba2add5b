"""A later extract of a county already written: the same people, time moved on, and
optionally a known drift in the data feed.

The latent process draws its random numbers month by month from one stream, so simulating
the county from the same start to a later end replays the earlier months exactly (the same
falls, admissions, care starts and deaths) and continues them. The records written for the
earlier months are taken from the earlier extract as they are; only the new months' rows come
from the longer simulation (their record emission draws from another stream), keyed after
the earlier extract's last key. Then, as a real full extract of a rolling window would:
- rows dated in the months that left the window fall off (rows dated before the county's
  first extract started are standing history, problem lists and services begun earlier, and
  stay; deaths stay);
- a few rows are corrected (a GP observation's value fixed; a hospital stay open at the
  earlier extract date ends);
- a few GP entries coded in error disappear;
- the earlier extract's injected bad rows (truth/mess.parquet) are not repeated.
Every change is counted in the manifest's "changes", and a drift's size in its "drift". The
truth files are recomputed at the later window's index dates (exact: the same process);
a drift changes records only, never the latent risk, and the manifest says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.codes import packaged_codes
from features.contract import TABLES, Table
from synthetic.assemble import ARROW_TYPES, ID_PREFIX, person_ids, to_arrow
from synthetic.config import CountyConfig, add_months, months_between
from synthetic.generate import (
    Format,
    Progress,
    _outcome_sources,
    _practices,
    _write,
    cohort_truth,
    simulate_county,
)
from synthetic.outcomes import realised_outcomes
from synthetic.people import GP_SYSTEMS, build_geography, rng_for

Drift = Literal["gp-system", "new-provider", "prevalence"]
DRIFTS: tuple[Drift, ...] = ("gp-system", "new-provider", "prevalence")
CORRECTED_SHARE = 0.005  # of GP observations with a value
ERROR_SHARE = 0.002  # of GP entries in the window
NEW_PROVIDER_SHARE = 0.10  # of living people 65+ at home without home care
PREVALENCE_RISE = 0.10  # of living people 65+ without a recorded fall in the last 12 months
LATER_STREAM = 11  # rng_for stream of the later extract's own choices


@dataclass(frozen=True)
class Window:
    """The county's first start, and the earlier and later extracts' windows."""

    county_start: date
    old_end: date
    start: date
    end: date

    @property
    def months_since_county_start(self) -> int:
        return months_between(self.county_start, self.start)


def later_extract(
    earlier_dir: Path,
    out_dir: Path,
    months: int,
    drift: Drift | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write out_dir as the full extract `months` months after earlier_dir's; return its
    manifest."""
    if months < 1:
        raise ValueError(f"--months must be at least 1, not {months}")
    if drift is not None and drift not in DRIFTS:
        raise ValueError(f"unknown drift {drift!r}: one of {', '.join(DRIFTS)}")
    report = progress or (lambda stage, fraction: None)
    earlier = read_manifest(Path(earlier_dir))
    window = _window(earlier, months)
    config = _config(earlier, window)
    fmt: Format = "csv" if earlier.get("format") == "csv" else "parquet"
    report("reading the earlier extract", 0.0)
    old = {spec.name: _read_clean(Path(earlier_dir), spec, fmt) for spec in TABLES}
    report("simulating the months since", 0.1)
    index_months = list(range(window.months_since_county_start + 12, config.months + 1, 3))
    parts, truth, reference = simulate_county(config, report, index_months)
    geo = build_geography(config)
    pids = pa.array(person_ids(config.seed, np.arange(config.people)), type=pa.string())
    fresh = {spec.name: to_arrow(spec, parts.pop(spec.name), pids, geo) for spec in TABLES}
    report("assembling the later extract", 0.8)
    rng = rng_for(config.seed, LATER_STREAM, months_between(window.county_start, window.end))
    tables, changes = _roll(old, fresh, window, rng)
    drift_size = _apply_drift(drift, tables, window, rng) if drift else None
    out_dir = Path(out_dir)
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    for spec in TABLES:
        _write(tables[spec.name], spec, out_dir, fmt)
    _write_truth(config, tables, truth, reference, pids, index_months, out_dir)
    manifest = _manifest(earlier, config, window, fmt, tables, changes, drift, drift_size)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    report("done", 1.0)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.exists():
        raise ValueError(f"{folder} has no manifest.json: not a synthetic county extract")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("generator") != "carerisk.synthetic":
        raise ValueError(f"{path}: not written by the synthetic county generator")
    return manifest


def _window(earlier: dict[str, Any], months: int) -> Window:
    old_start = date.fromisoformat(earlier["start"])
    old_end = date.fromisoformat(earlier["end"])
    after = add_months(old_end + timedelta(days=1), months)
    return Window(
        county_start=date.fromisoformat(earlier.get("county_start", earlier["start"])),
        old_end=old_end,
        start=add_months(old_start, months),
        end=after - timedelta(days=1),
    )


def _config(earlier: dict[str, Any], window: Window) -> CountyConfig:
    """The earlier county's settings, simulated from its first start to the later end."""
    return CountyConfig(
        people=earlier["people"],
        seed=earlier["seed"],
        start=window.county_start,
        end=window.end,
        mess_rate=0.0,
        structure=earlier.get("structure", "realistic"),
        underrecording_practice_share=earlier.get("underrecording_practice_share", 0.15),
    )


def _read_clean(folder: Path, spec: Table, fmt: Format) -> pa.Table:
    """One table of the earlier extract without the bad rows its mess manifest lists, in the
    contract's types (a wrong-typed bad row makes its column text until it is gone)."""
    path = folder / f"{spec.name}.{fmt}"
    schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.kind]) for c in spec.columns])
    if fmt == "parquet":
        table = pq.read_table(path).select(schema.names)
    else:
        text = pacsv.ConvertOptions(column_types={n: pa.string() for n in schema.names})
        table = pacsv.read_csv(path, convert_options=text).select(schema.names)
    mess = folder / "truth" / "mess.parquet"
    if mess.exists():
        listed = pq.read_table(mess).filter(pc.equal(pc.field("table"), spec.name))
        keep = np.ones(table.num_rows, dtype=bool)
        keep[np.asarray(listed.column("row_number").to_numpy(), dtype=np.int64)] = False
        table = table.filter(pa.array(keep))
    return table.cast(schema)


def _day(d: date) -> pa.Scalar:
    return pa.scalar(d, type=pa.date32())


def _roll(
    old: dict[str, pa.Table], fresh: dict[str, pa.Table], window: Window, rng: np.random.Generator
) -> tuple[dict[str, pa.Table], dict[str, dict[str, int]]]:
    """The earlier rows still in the window, corrected and cleaned, plus the new months'."""
    tables: dict[str, pa.Table] = {}
    changes: dict[str, dict[str, int]] = {}
    for spec in TABLES:
        kept, fell_off = _still_in_window(old[spec.name], spec, window)
        added = _new_rows(fresh[spec.name], spec, window, old[spec.name])
        counts = {"fell_off": fell_off, "corrected": 0, "deleted_in_error": 0}
        if spec.name == "gp_event":
            kept, counts["corrected"] = _correct_values(kept, rng)
            kept, counts["deleted_in_error"] = _delete_in_error(kept, rng)
        if spec.name == "hospital_episode":
            kept, counts["corrected"] = _discharge(kept, old["death"], window, rng)
        counts["added"] = added.num_rows
        tables[spec.name] = pa.concat_tables([kept, added])
        changes[spec.name] = counts
    return tables, changes


def _still_in_window(table: pa.Table, spec: Table, window: Window) -> tuple[pa.Table, int]:
    """Rows dated in the months that left the window fall off; standing history (dated before
    the county's first start), the person table and deaths stay."""
    if spec.event_date is None or spec.name == "death":
        return table, 0
    day = table.column(spec.event_date)
    left = pc.and_(
        pc.greater_equal(day, _day(window.county_start)), pc.less(day, _day(window.start))
    )
    left = pc.fill_null(left, False)
    return table.filter(pc.invert(left)), int(pc.sum(left).as_py() or 0)


def _new_rows(fresh: pa.Table, spec: Table, window: Window, earlier: pa.Table) -> pa.Table:
    """The longer simulation's rows dated after the earlier extract, keyed after the earlier
    extract's last key, rows that fell off the window included: a source never gives a new
    record the key of one it has dropped (new deaths: the people who died in the new months)."""
    if spec.name == "person":
        return fresh.slice(0, 0)
    day = fresh.column(spec.event_date or "")
    new = fresh.filter(pc.fill_null(pc.greater(day, _day(window.old_end)), False))
    if spec.key[0] == "person_id":
        return new
    prefix = ID_PREFIX[spec.name]
    last = _last_number(earlier.column(spec.key[0]), prefix)
    numbers = np.arange(last + 1, last + 1 + new.num_rows, dtype=np.int64)
    keys = pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")
    return new.set_column(new.schema.get_field_index(spec.key[0]), spec.key[0], keys)


def _last_number(keys: pa.ChunkedArray, prefix: str) -> int:
    if len(keys) == 0:
        return 0
    digits = pc.utf8_slice_codeunits(keys, len(prefix))
    numbers = pc.cast(pc.if_else(pc.utf8_is_digit(digits), digits, "0"), pa.int64())
    return int(pc.max(numbers).as_py() or 0)


def _correct_values(gp: pa.Table, rng: np.random.Generator) -> tuple[pa.Table, int]:
    """A share of GP observations have their value corrected (raised by one, within range)."""
    value = gp.column("value").to_numpy(zero_copy_only=False).astype(float)
    fix = ~np.isnan(value) & (value <= 999) & (rng.random(len(value)) < CORRECTED_SHARE)
    fixed = np.where(fix, value + 1.0, value)
    column = pa.array(fixed, type=pa.float64(), mask=np.isnan(fixed))
    return gp.set_column(gp.schema.get_field_index("value"), "value", column), int(fix.sum())


def _delete_in_error(gp: pa.Table, rng: np.random.Generator) -> tuple[pa.Table, int]:
    gone = rng.random(gp.num_rows) < ERROR_SHARE
    return gp.filter(pa.array(~gone)), int(gone.sum())


def _discharge(
    episodes: pa.Table, deaths: pa.Table, window: Window, rng: np.random.Generator
) -> tuple[pa.Table, int]:
    """Stays open at the earlier extract date end now: 1 to 28 days after it (within the
    later window), or on the person's death if sooner."""
    column = episodes.column("discharge_date")
    rows = np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return episodes, 0
    days = column.to_numpy(zero_copy_only=False).astype("datetime64[D]")
    ends = np.datetime64(window.old_end, "D") + rng.integers(1, 29, len(rows))
    ends = np.minimum(ends, np.datetime64(window.end, "D"))
    ids = episodes.column("person_id").take(pa.array(rows))
    at = pc.index_in(ids, value_set=deaths.column("person_id").combine_chunks())
    died = deaths.column("date_of_death").combine_chunks().take(at)
    died_days = died.to_numpy(zero_copy_only=False).astype("datetime64[D]")
    days[rows] = np.where(np.isnat(died_days), ends, np.minimum(ends, died_days))
    out = pa.array(days, type=pa.date32(), mask=np.isnat(days))
    index = episodes.schema.get_field_index("discharge_date")
    return episodes.set_column(index, "discharge_date", out), len(rows)


# --- drift ---------------------------------------------------------------------------------


def _apply_drift(
    drift: Drift, tables: dict[str, pa.Table], window: Window, rng: np.random.Generator
) -> dict[str, Any]:
    if drift == "gp-system":
        return _gp_system(tables)
    if drift == "new-provider":
        return _new_provider(tables, window, rng)
    return _prevalence(tables, window, rng)


def _gp_system(tables: dict[str, pa.Table]) -> dict[str, Any]:
    """The practice with the most people moves to the least used GP system, whose extract
    does not carry its fall codes: its people's GP fall entries are gone."""
    person = tables["person"]
    practices = person.group_by("practice_code").aggregate([("person_id", "count")])
    biggest = practices.sort_by([("person_id_count", "descending")])["practice_code"][0].as_py()
    systems = person.group_by("gp_system").aggregate([("person_id", "count")])
    used = dict(
        zip(systems["gp_system"].to_pylist(), systems["person_id_count"].to_pylist(), strict=True)
    )
    in_practice = pc.equal(person.column("practice_code"), biggest)
    old_system = person.filter(in_practice)["gp_system"][0].as_py()
    target = min((s for s in GP_SYSTEMS if s != old_system), key=lambda s: used.get(s, 0))
    systems_now = pc.if_else(in_practice, target, person.column("gp_system"))
    index = person.schema.get_field_index("gp_system")
    tables["person"] = person.set_column(index, "gp_system", systems_now)
    movers = person.filter(in_practice).column("person_id")
    gp = tables["gp_event"]
    falls = pc.is_in(gp.column("snomed_code"), pa.array(sorted(packaged_codes().fall_snomed)))
    gone = pc.and_(falls, pc.is_in(gp.column("person_id"), movers))
    tables["gp_event"] = gp.filter(pc.invert(gone))
    all_falls = int(pc.sum(falls).as_py() or 0)
    removed = int(pc.sum(gone).as_py() or 0)
    return {
        "kind": "gp-system",
        "practice_code": biggest,
        "from_system": old_system,
        "to_system": target,
        "people_moved": len(movers),
        "people_share": round(len(movers) / max(person.num_rows, 1), 4),
        "gp_fall_entries_removed": removed,
        "gp_fall_entries_share_removed": round(removed / max(all_falls, 1), 4),
    }


def _ages_at(person: pa.Table, day: date) -> np.ndarray:
    birth = person.column("birth_month").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    return np.asarray((np.datetime64(day, "D") - birth).astype(np.int64) / 365.25)


def _living_old(tables: dict[str, pa.Table], day: date) -> np.ndarray:
    """Row positions in the person table of people 65+ alive on `day`."""
    person = tables["person"]
    dead = pc.is_in(person.column("person_id"), tables["death"].column("person_id"))
    alive = ~dead.to_numpy(zero_copy_only=False)
    return np.flatnonzero(alive & (_ages_at(person, day) >= 65))


def _without(tables: dict[str, pa.Table], rows: np.ndarray, having: pa.Array) -> np.ndarray:
    ids = tables["person"].column("person_id").take(pa.array(rows))
    has = pc.is_in(ids, having).to_numpy(zero_copy_only=False)
    return rows[~has]


def _new_provider(
    tables: dict[str, pa.Table], window: Window, rng: np.random.Generator
) -> dict[str, Any]:
    """A new home care provider starts in the new months, taking on a share of the people 65+
    living at home without home care: one home care package each (new rows)."""
    care = tables["social_care"]
    on_care = care.filter(pc.equal(care.column("service_type"), "home_care")).column("person_id")
    homes = care.filter(pc.equal(care.column("service_type"), "care_home")).column("person_id")
    first_new = window.old_end + timedelta(days=1)
    rows = _without(tables, _living_old(tables, window.end), pa.concat_arrays(
        [on_care.combine_chunks(), homes.combine_chunks()]
    ))  # fmt: skip
    chosen = rows[rng.random(len(rows)) < NEW_PROVIDER_SHARE]
    span = (window.end - first_new).days + 1
    starts = np.datetime64(first_new, "D") + rng.integers(0, span, len(chosen))
    hours = 7.0 + np.round(rng.gamma(2.0, 4.0, len(chosen)))
    added = _keyed_rows(
        "social_care",
        care,
        {
            "person_id": tables["person"].column("person_id").take(pa.array(chosen)),
            "service_type": pa.array(["home_care"] * len(chosen), type=pa.string()),
            "start_date": pa.array(starts, type=pa.date32()),
            "end_date": pa.nulls(len(chosen), type=pa.date32()),
            "hours_per_week": pa.array(np.minimum(hours, 168.0), type=pa.float64()),
        },
    )
    tables["social_care"] = pa.concat_tables([care, added])
    return {
        "kind": "new-provider",
        "share_of_eligible": NEW_PROVIDER_SHARE,
        "eligible_people": len(rows),
        "people_with_new_home_care": len(chosen),
        "social_care_rows_added": len(chosen),
    }


def _prevalence(
    tables: dict[str, pa.Table], window: Window, rng: np.random.Generator
) -> dict[str, Any]:
    """Recorded falls become more common: a share of the people 65+ without a GP fall entry in
    the last 12 months get one (new rows), dated in those 12 months."""
    gp = tables["gp_event"]
    year_ago = add_months(window.end + timedelta(days=1), -12)
    recent = pc.and_(
        pc.is_in(gp.column("snomed_code"), pa.array(sorted(packaged_codes().fall_snomed))),
        pc.greater_equal(gp.column("event_date"), _day(year_ago)),
    )
    fallers = gp.filter(recent).column("person_id").combine_chunks()
    old = _living_old(tables, window.end)
    rows = _without(tables, old, fallers)
    chosen = rows[rng.random(len(rows)) < PREVALENCE_RISE]
    span = (window.end - year_ago).days + 1
    days = np.datetime64(year_ago, "D") + rng.integers(0, span, len(chosen))
    fall_codes = sorted(packaged_codes().fall_snomed)
    added = _keyed_rows(
        "gp_event",
        gp,
        {
            "person_id": tables["person"].column("person_id").take(pa.array(chosen)),
            "event_date": pa.array(days, type=pa.date32()),
            "snomed_code": pa.array(
                [fall_codes[i] for i in rng.integers(0, len(fall_codes), len(chosen))],
                type=pa.string(),
            ),
            "value": pa.nulls(len(chosen), type=pa.float64()),
        },
    )
    tables["gp_event"] = pa.concat_tables([gp, added])
    return {
        "kind": "prevalence",
        "gp_fall_entry_share_before": round(1 - len(rows) / max(len(old), 1), 4),
        "gp_fall_entry_share_after": round(1 - (len(rows) - len(chosen)) / max(len(old), 1), 4),
        "people_65_plus": len(old),
        "gp_fall_entries_added": len(chosen),
    }


def _keyed_rows(name: str, table: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    """New rows of `name` with keys after the table's last one."""
    spec = next(s for s in TABLES if s.name == name)
    key = spec.key[0]
    prefix = ID_PREFIX[name]
    n = len(next(iter(columns.values())))
    last = _last_number(table.column(key), prefix)
    numbers = pa.array(np.arange(last + 1, last + 1 + n, dtype=np.int64))
    columns = {key: pc.binary_join_element_wise(prefix, pc.cast(numbers, pa.string()), ""),
               **columns}  # fmt: skip
    return pa.table({c: columns[c] for c in table.schema.names}, schema=table.schema)


# --- truth and manifest --------------------------------------------------------------------


def _write_truth(
    config: CountyConfig,
    tables: dict[str, pa.Table],
    truth: Any,
    reference: Any,
    pids: pa.Array,
    index_months: list[int],
    out_dir: Path,
) -> None:
    dates = [add_months(config.start, m) for m in index_months]
    outcomes = realised_outcomes(_outcome_sources(tables), dates, config.end)
    truth_table, reference_table = cohort_truth(
        truth, reference, pids, config, outcomes, index_months=index_months
    )
    reference_table = reference_table.rename_columns(
        ["person_id", "index_date", "outcome", "reference_probability"]
    )
    pq.write_table(truth_table, out_dir / "truth" / "true_risk.parquet")
    pq.write_table(reference_table, out_dir / "truth" / "records_reference.parquet")
    pq.write_table(outcomes, out_dir / "truth" / "outcomes.parquet")
    pq.write_table(_empty_mess(), out_dir / "truth" / "mess.parquet")
    pq.write_table(_practices(config), out_dir / "truth" / "practices.parquet")


def _empty_mess() -> pa.Table:
    from synthetic.mess import mess_table

    return mess_table({})


def _manifest(
    earlier: dict[str, Any],
    config: CountyConfig,
    window: Window,
    fmt: Format,
    tables: dict[str, pa.Table],
    changes: dict[str, dict[str, int]],
    drift: Drift | None,
    drift_size: dict[str, Any] | None,
) -> dict[str, Any]:
    index_dates = [
        add_months(window.county_start, m).isoformat()
        for m in range(window.months_since_county_start + 12, config.months + 1, 3)
    ]
    return {
        "generator": "carerisk.synthetic",
        "kind": "full",
        "format": fmt,
        "extract_date": window.end.isoformat(),
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "county_start": window.county_start.isoformat(),
        "later_of": {
            "extract_date": earlier["extract_date"],
            "months": months_between(window.old_end, window.end),
        },
        "seed": config.seed,
        "people": config.people,
        "structure": config.structure,
        "mess_rate": 0.0,
        "underrecording_practice_share": config.underrecording_practice_share,
        "rows": {name: t.num_rows for name, t in tables.items()},
        "mess_rows": 0,
        "changes": changes,
        "drift": drift_size,
        "drift_note": (
            None
            if drift is None
            else "the drift changes records only; truth/ is the clean county's latent risk"
        ),
        "index_dates": index_dates,
        "truth": {
            "true_risk": "truth/true_risk.parquet",
            "records_reference": "truth/records_reference.parquet",
            "outcomes": "truth/outcomes.parquet",
            "mess": "truth/mess.parquet",
            "practices": "truth/practices.parquet",
        },
    }
