"""The truth: exact probabilities that match the realised records, and realism targets."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from features.codes import AMBULANCE_FALL_CATEGORIES, packaged_codes
from synthetic import CountyConfig, GenerationSummary
from synthetic.baseline import prepare
from synthetic.people import People, build_geography, make_people, rng_for
from synthetic.process import Baseline, Events, Structure, Window, _step, month_rates
from synthetic.realism import realism_figures

VALIDATION = "2024-01-01"


@pytest.fixture(scope="module")
def figures(county: tuple[Path, GenerationSummary]) -> dict[str, float]:
    return realism_figures(county[0], "2024-04-01")


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


def _joined(out: Path, outcome: str, index: str) -> np.ndarray:
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT t.true_probability, o.event FROM '{out}/truth/true_risk.parquet' t
        JOIN '{out}/truth/outcomes.parquet' o USING (person_id, index_date, outcome)
        WHERE outcome = ? AND index_date = DATE '{index}'""",
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
    assert ages is not None and ages[0] == 65


def _recompute(out: Path, person: str, outcome: str, index: date) -> tuple[int, int]:
    """Outcome for one person straight from the written files, in plain Python."""
    stop = date(index.year + 1, index.month, index.day)
    events: list[date] = []

    def rows(name: str) -> list[dict]:
        t = pq.read_table(out / f"{name}.parquet", filters=[("person_id", "=", person)])
        return t.to_pylist()

    hosp = [h for h in rows("hospital_episode") if h["admission_method"] == "emergency"]
    if outcome == "falls":
        for a in rows("ae_attendance"):
            if any((v or "")[:3] in packaged_codes().fall_icd10_prefixes
                   for v in (a["diagnosis_code"], a["injury_cause"])):  # fmt: skip
                events.append(a["arrival_date"])
        for h in hosp:
            diags = [h[f"diag_{k:02d}"] or "" for k in range(1, 7)]
            if any(d[:3] in packaged_codes().fall_icd10_prefixes for d in diags) or (
                diags[0][:4] in packaged_codes().fragility_fracture_prefixes
            ):
                events.append(h["admission_date"])
        events += [a["incident_date"] for a in rows("ambulance_incident")
                   if a["category"] in AMBULANCE_FALL_CATEGORIES]  # fmt: skip
        events += [
            g["event_date"]
            for g in rows("gp_event")
            if g["snomed_code"] in packaged_codes().fall_snomed
        ]
    else:
        for s in rows("social_care"):
            high = s["service_type"] == "home_care" and (s["hours_per_week"] or 0) >= 14
            if high or s["service_type"] in ("residential", "nursing"):
                events.append(s["start_date"])
        for h in hosp:
            end = h["discharge_date"] or date(2025, 3, 31)
            if (end - h["admission_date"]).days > 21:
                events.append(h["admission_date"])
        inside = sorted(h["admission_date"] for h in hosp if index <= h["admission_date"] < stop)
        if len(inside) >= 3:
            events.append(inside[2])
    inside_events = [e for e in events if index <= e < stop]
    first = min(inside_events) if inside_events else None
    deaths = rows("death")
    died = deaths[0]["date_of_death"] if deaths else None
    died_first = died is not None and index <= died < stop and (first is None or died < first)
    return int(first is not None), int(died_first)


@pytest.mark.parametrize("outcome", ["falls", "complex_dependency"])
def test_outcomes_agree_with_the_records(
    county: tuple[Path, GenerationSummary], outcome: str
) -> None:
    out = county[0]
    con = duckdb.connect()
    picks = con.execute(
        f"""(SELECT person_id, event, died_before_event FROM '{out}/truth/outcomes.parquet'
             WHERE outcome = ? AND index_date = DATE '{VALIDATION}' AND event = 1
             ORDER BY person_id LIMIT 4)
        UNION ALL
            (SELECT person_id, event, died_before_event FROM '{out}/truth/outcomes.parquet'
             WHERE outcome = ? AND index_date = DATE '{VALIDATION}' AND died_before_event = 1
             ORDER BY person_id LIMIT 3)
        UNION ALL
            (SELECT person_id, event, died_before_event FROM '{out}/truth/outcomes.parquet'
             WHERE outcome = ? AND index_date = DATE '{VALIDATION}' AND event = 0
             ORDER BY person_id LIMIT 3)""",
        [outcome] * 3,
    ).fetchall()
    assert len(picks) == 10
    for person, event, died in picks:
        assert _recompute(out, person, outcome, date.fromisoformat(VALIDATION)) == (event, died)


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
