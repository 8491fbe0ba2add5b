"""The truth: exact probabilities that match the realised records, and realism targets."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from evaluation.fairness import poisson_ratio_interval
from evaluation.metrics import auroc
from features.codes import packaged_codes
from features.cohorts import cohort
from features.contract import TABLES
from features.engines import open_sources
from features.labels import LabelSettings, labels
from features.outcomes import COMPLEX_DEPENDENCY, FALLS, PRODUCT, Outcome
from features.store import load_extract
from synthetic import CountyConfig, GenerationSummary
from synthetic.baseline import prepare
from synthetic.outcomes import has_follow_up, realised_outcomes
from synthetic.people import People, build_geography, make_people, rng_for
from synthetic.process import Baseline, Events, Structure, Window, _step, month_rates
from synthetic.realism import realism_figures

VALIDATION = "2024-01-01"


@pytest.fixture(scope="module")
def figures(county: tuple[Path, GenerationSummary]) -> dict[str, float]:
    found = realism_figures(county[0], "2024-04-01")
    truth = _joined(county[0], "falls", None)
    found["falls_true_auroc"] = auroc(truth[:, 1], truth[:, 0])
    return found


# (figure, low, high): clinical.md targets for people aged 65+, with the tolerance allowed
REALISM = [
    ("share_65_plus", 0.20, 0.26),
    ("falls_event_rate", 0.05, 0.10),
    ("fall_admission_rate", 0.013, 0.03),
    ("hip_fracture_rate", 0.003, 0.009),
    ("efi_fit", 0.42, 0.60),
    ("efi_mild", 0.27, 0.42),
    ("efi_moderate", 0.07, 0.17),
    ("efi_severe", 0.01, 0.06),
    ("living_alone", 0.25, 0.35),
    ("dementia_diagnosed", 0.025, 0.055),
    ("long_term_care", 0.035, 0.07),
    ("death_rate", 0.03, 0.05),
    ("ethnicity_unrecorded", 0.05, 0.10),
    ("falls_true_auroc", 0.74, 0.87),
]


@pytest.mark.parametrize(("name", "low", "high"), REALISM, ids=[r[0] for r in REALISM])
def test_realism_targets(figures: dict[str, float], name: str, low: float, high: float) -> None:
    assert low <= figures[name] <= high, f"{name} = {figures[name]:.4f}"


def test_hospitalisation_rises_with_efi_band(figures: dict[str, float]) -> None:
    rates = [figures[f"admission_rate_{b}"] for b in ("fit", "mild", "moderate", "severe")]
    assert rates[0] < rates[1] < rates[2] < rates[3]
    assert 1.3 < rates[1] / rates[0] < 3.0


def _joined(out: Path, outcome: str, index: str | None) -> np.ndarray:
    """(true probability, event) of the outcome's rows at `index` (None: every date with
    follow-up)."""
    when = f"index_date = DATE '{index}'" if index else "o.event IS NOT NULL"
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT t.true_probability, o.event FROM '{out}/truth/true_risk.parquet' t
        JOIN '{out}/truth/outcomes.parquet' o USING (person_id, index_date, outcome)
        WHERE outcome = ? AND {when}""",
        [outcome],
    ).fetchnumpy()
    prob = np.asarray(rows["true_probability"], dtype=float)
    return np.column_stack([prob, np.asarray(rows["event"], dtype=float)])


@pytest.mark.parametrize("outcome", ["falls", "complex_dependency"])
def test_truth_is_calibrated_by_decile(
    county: tuple[Path, GenerationSummary], outcome: str
) -> None:
    data = _joined(county[0], outcome, VALIDATION)
    order = np.argsort(data[:, 0], kind="stable")
    deciles = np.array_split(data[order], 10)
    rates, means = [], []
    for d in deciles:
        expected = d[:, 0].sum()
        observed = d[:, 1].sum()
        sd = math.sqrt((d[:, 0] * (1 - d[:, 0])).sum())
        # binomial tolerance: 3.5 standard deviations plus one event for tiny counts
        assert abs(observed - expected) <= 3.5 * sd + 1.0, (outcome, observed, expected)
        rates.append(observed / len(d))
        means.append(expected / len(d))
    assert means == sorted(means)
    assert sum(rates[:5]) < sum(rates[5:])  # realised rate rises with the truth
    assert rates[-1] > 3 * max(rates[0], 1e-3)


def test_truth_rows(county: tuple[Path, GenerationSummary]) -> None:
    out = county[0]
    truth = pq.read_table(out / "truth" / "true_risk.parquet")
    outcomes = pq.read_table(out / "truth" / "outcomes.parquet")
    assert truth.num_rows == outcomes.num_rows
    p = truth.column("true_probability").to_numpy()
    assert (p >= 0).all() and (p <= 1).all()
    con = duckdb.connect()
    last = con.execute(
        f"SELECT count(*), count(event) FROM '{out}/truth/outcomes.parquet' "
        "WHERE index_date = DATE '2025-04-01'"
    ).fetchone()
    assert last is not None and last[0] > 0 and last[1] == 0
    ages = con.execute(
        f"""SELECT min(date_diff('year', birth_month, index_date)) FROM
        '{out}/truth/true_risk.parquet' JOIN '{out}/person.parquet' USING (person_id)
        WHERE outcome = 'falls'"""
    ).fetchone()
    assert ages is not None and ages[0] == FALLS.cohort.min_age


@pytest.fixture(scope="module")
def store(county: tuple[Path, GenerationSummary], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The county loaded into a store, as `carerisk load` does."""
    path = tmp_path_factory.mktemp("truth-store") / "store.duckdb"
    load_extract(county[0], path)
    return path


def _dates(out: Path) -> list[date]:
    manifest = json.loads((out / "manifest.json").read_text())
    return [date.fromisoformat(d) for d in manifest["index_dates"]]


def _extract_end(out: Path) -> date:
    return date.fromisoformat(json.loads((out / "manifest.json").read_text())["end"])


def _store_labels(
    store: Path, outcome: Outcome, days: list[date], settings: LabelSettings | None = None
) -> pd.DataFrame:
    """features.labels over features.cohorts.cohort, read from the store, at each date."""
    frames = []
    with open_sources(store) as src:
        for day in days:
            rows = cohort(src, outcome, day).join(labels(src, outcome, day, settings), "person_id")
            frame = rows.select("person_id", "label", "died_before_event").to_pandas()
            frames.append(frame.assign(index_date=day))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["index_date", "person_id"], ignore_index=True)


def _truth_outcomes(out: Path, outcome: str, days: list[date]) -> pd.DataFrame:
    frame = pq.read_table(out / "truth" / "outcomes.parquet").to_pandas()
    frame = frame[(frame["outcome"] == outcome) & frame["index_date"].isin(days)]
    return frame.sort_values(["index_date", "person_id"], ignore_index=True)


@pytest.mark.parametrize("name", PRODUCT.names())
def test_realised_outcomes_are_the_labels(
    county: tuple[Path, GenerationSummary], store: Path, name: str
) -> None:
    """Row for row, at every index date with follow-up: the truth's outcomes are the labels the
    project computes from the loaded store, over its cohort."""
    out, outcome = county[0], PRODUCT.get(name)
    days = [d for d in _dates(out) if has_follow_up(outcome, d, _extract_end(out))]
    assert len(days) >= 5
    truth = _truth_outcomes(out, name, days)
    ours = _store_labels(store, outcome, days)
    assert len(truth) == len(ours) > 0
    assert (truth["person_id"].to_numpy() == ours["person_id"].to_numpy()).all()
    assert (truth["index_date"].to_numpy() == ours["index_date"].to_numpy()).all()
    assert (truth["event"].to_numpy() == ours["label"].to_numpy()).all()
    assert (truth["died_before_event"].to_numpy() == ours["died_before_event"].to_numpy()).all()
    assert 0 < truth["event"].sum() < len(truth)


@pytest.mark.parametrize("name", PRODUCT.names())
def test_truth_cohort_is_the_label_cohort(
    county: tuple[Path, GenerationSummary], store: Path, name: str
) -> None:
    """At every index date (with follow-up or not), the people with a true probability are
    exactly the outcome's cohort as the store's records give it."""
    out, outcome = county[0], PRODUCT.get(name)
    truth = pq.read_table(out / "truth" / "true_risk.parquet").to_pandas()
    truth = truth[truth["outcome"] == name]
    with open_sources(store) as src:
        for day in _dates(out):
            members = set(cohort(src, outcome, day).to_pandas()["person_id"])
            held = truth.loc[truth["index_date"] == day, "person_id"]
            assert len(held) == held.nunique() == len(members), day
            assert set(held) == members, day


@pytest.mark.parametrize("name", PRODUCT.names())
def test_observed_over_true_events_is_one(
    county: tuple[Path, GenerationSummary], name: str
) -> None:
    """Pooled over the index dates with follow-up, realised events over the sum of the true
    probabilities: the exact Poisson 99% interval holds 1."""
    out = county[0]
    rows = (
        duckdb.connect()
        .execute(
            f"""SELECT sum(o.event), sum(t.true_probability) FROM
            '{out}/truth/true_risk.parquet' t JOIN '{out}/truth/outcomes.parquet' o
            USING (person_id, index_date, outcome)
            WHERE outcome = ? AND o.event IS NOT NULL""",
            [name],
        )
        .fetchone()
    )
    assert rows is not None
    observed, expected = float(rows[0]), float(rows[1])
    low, high = poisson_ratio_interval(np.array(observed), np.array(expected), 0.99)
    assert low <= 1.0 <= high, (name, observed, expected, float(low), float(high))


def test_a_changed_threshold_changes_labels_and_truth_alike(
    county: tuple[Path, GenerationSummary], store: Path
) -> None:
    """Complex dependency with new home care from 7 hours a week instead of 14: the realised
    outcomes written from the records and the store's labels move together."""
    out, outcome = county[0], COMPLEX_DEPENDENCY
    settings = LabelSettings(home_care_hours=7.0)
    days = [d for d in _dates(out) if has_follow_up(outcome, d, _extract_end(out))]
    tables = {spec.name: pq.read_table(out / f"{spec.name}.parquet") for spec in TABLES}
    written = realised_outcomes(tables, days, _extract_end(out), [outcome], settings).to_pandas()
    written = written.sort_values(["index_date", "person_id"], ignore_index=True)
    ours = _store_labels(store, outcome, days, settings)
    assert (written["person_id"].to_numpy() == ours["person_id"].to_numpy()).all()
    assert (written["event"].to_numpy() == ours["label"].to_numpy()).all()
    default = _truth_outcomes(out, outcome.name, days)
    assert (written["person_id"].to_numpy() == default["person_id"].to_numpy()).all()
    assert written["event"].sum() > default["event"].sum()


def _replicate(p: People, who: int, k: int) -> People:
    values: dict[str, object] = {}
    for f in fields(People):
        v = getattr(p, f.name)
        if f.name == "conditions":
            values[f.name] = {c: np.repeat(a[who], k) for c, a in v.items()}
        else:
            values[f.name] = np.repeat(v[who], k)
    return People(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("structure", "earlier_falls"), [("realistic", 0), ("realistic", 1), ("additive", 0)]
)
def test_truth_matches_brute_force_simulation(structure: Structure, earlier_falls: int) -> None:
    """The exact window probabilities equal the frequency of outcomes over many futures,
    whatever the structure and the falls recorded before the window."""
    config = CountyConfig(people=2_000, seed=9)
    start_abs = config.start.year * 12 + config.start.month - 1
    p = make_people(config, build_geography(config), 0, 2_000, start_abs)
    setup = prepare(p, rng_for(9, 3), start_abs, structure)
    age = p.age_years(start_abs)
    frail = setup.base.d0 * (age >= 80) * p.conditions["dementia"]
    people = [int(np.argmax(frail)), int(np.argmax(age * (age < 90))), 7]
    k, month = 40_000, 12
    rng = np.random.default_rng(1)
    for who in people:
        rp = _replicate(p, who, k)
        base = Baseline(*(np.repeat(getattr(setup.base, f.name)[who], k) for f in fields(Baseline)))
        alive = np.ones(k, dtype=bool)
        resident = np.zeros(k, dtype=bool)
        falls = np.full(k, earlier_falls, dtype=np.int8)
        w = Window.open(month, alive, resident, falls)
        ev = Events(death_month=np.full(k, -1, dtype=np.int64))
        for t in range(month, month + 12):
            r = month_rates(rp, base, start_abs, t, structure)
            w.step(r)
            _step(t, r, rng, alive, resident, falls, ev.death_month, ev)
        sim_falls = _first_before_death(ev, k)
        assert abs(sim_falls - w.p_falls[0]) < 4 * math.sqrt(w.p_falls[0] / k) + 1e-3
        sim_cd = _cd_rate(ev, k)
        assert abs(sim_cd - w.p_cd[0]) < 4 * math.sqrt(w.p_cd[0] / k) + 1e-3


def _first_before_death(ev: Events, k: int) -> float:
    # a fall is drawn only while alive, so any fall in the window counts
    fell = np.zeros(k, dtype=bool)
    for idx in ev.fall_person:
        fell[idx] = True
    return float(fell.mean())


def _cd_rate(ev: Events, k: int) -> float:
    count = np.zeros(k, dtype=np.int64)
    hit = np.zeros(k, dtype=bool)
    for idx, long_, care in zip(ev.adm_person, ev.adm_long, ev.adm_care, strict=True):
        np.add.at(count, idx, 1)
        hit[idx[long_ | care]] = True
    for idx in ev.care_person:
        hit[idx] = True
    return float((hit | (count >= 3)).mean())


def test_some_practices_under_record_frailty(county: tuple[Path, GenerationSummary]) -> None:
    out = county[0]
    codes_sql = ", ".join(f"'{c}'" for cs in packaged_codes().efi_deficits.values() for c in cs)
    rows = (
        duckdb.connect()
        .execute(
            f"""WITH old AS (
          SELECT person_id, practice_code FROM '{out}/person.parquet'
          WHERE date_diff('year', birth_month, DATE '2024-04-01') >= 65),
        n AS (SELECT person_id, count(DISTINCT snomed_code) AS k FROM '{out}/gp_event.parquet'
              WHERE snomed_code IN ({codes_sql}) GROUP BY person_id)
        SELECT p.underrecords_frailty, avg(coalesce(n.k, 0)), count(DISTINCT o.practice_code)
        FROM old o JOIN '{out}/truth/practices.parquet' p USING (practice_code)
        LEFT JOIN n USING (person_id) GROUP BY 1 ORDER BY 1"""
        )
        .fetchall()
    )
    (_, normal, n_normal), (_, under, n_under) = rows
    assert n_under >= 1 and n_normal > n_under
    assert under < 0.75 * normal


# an observable record feature and the direction it should move the true falls risk
DIRECTIONS = {
    "prior_fall": ("gp_event", "snomed_code IN ('217082002', '1912002', '161898004')", 1),
    "dementia": ("gp_event", "snomed_code = '52448006'", 1),
    "frid": ("prescription", "left(bnf_code, 4) IN ('0401', '0402', '0403')", 1),
    "obese": ("gp_event", "snomed_code = '60621009' AND CAST(value AS DOUBLE) >= 32", -1),
}


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_true_falls_risk_follows_clinical_directions(
    county: tuple[Path, GenerationSummary], name: str
) -> None:
    out = county[0]
    source, condition, sign = DIRECTIONS[name]
    with_, without = duckdb.connect().execute(
        f"""WITH flag AS (SELECT DISTINCT person_id FROM '{out}/{source}.parquet'
                          WHERE {condition} AND {_date_col(source)} < DATE '{VALIDATION}')
        SELECT avg(true_probability) FILTER (WHERE f.person_id IS NOT NULL),
               avg(true_probability) FILTER (WHERE f.person_id IS NULL)
        FROM '{out}/truth/true_risk.parquet' t LEFT JOIN flag f USING (person_id)
        WHERE t.outcome = 'falls' AND t.index_date = DATE '{VALIDATION}'"""
    ).fetchone() or (None, None)
    assert with_ is not None and without is not None
    assert (with_ - without) * sign > 0.01, (name, with_, without)


def _date_col(source: str) -> str:
    return {"gp_event": "event_date", "prescription": "issue_date"}[source]
