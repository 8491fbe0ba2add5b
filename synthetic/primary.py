"""GP record entries and prescriptions for one chunk of people."""

from __future__ import annotations

import numpy as np

from synthetic import catalogue as cat
from synthetic.baseline import NEVER
from synthetic.people import CONDITION_NAMES
from synthetic.process import frailty
from synthetic.records import Chunk, Falls, Part, _concat, _poisson_rows


def _gp_rows(c: Chunk, person: np.ndarray, month: np.ndarray, code: np.ndarray, value=None) -> Part:
    """GP entries in `month` (dropped when after death or outside the extract)."""
    keep = (month >= 0) & (month < c.months) & (month <= _last_month(c)[person])
    person, month, code = person[keep], month[keep], code[keep]
    n = len(person)
    val = np.full(n, np.nan) if value is None else np.asarray(value, dtype=float)[keep]
    return {
        "person": c.p.index[person],
        "event_date": c.date(person, month, c.rng.random(n)),
        "snomed_code": code.astype(np.int64),
        "value": val,
    }


def _last_month(c: Chunk) -> np.ndarray:
    d = c.ev.death_month
    return np.where(d >= 0, d, c.months - 1)


def _reviews(c: Chunk, person: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first coding month and yearly reviews after it (or from a random phase)."""
    phase = np.where(first < 0, c.rng.integers(0, 12, len(person)), first)
    persons, months = [], []
    for k in range(0, c.months // 12 + 1):
        persons.append(person)
        months.append(phase + 12 * k)
    return np.concatenate(persons), np.concatenate(months)


def gp_part(c: Chunk, falls: Falls) -> Part:
    p, s, rng = c.p, c.s, c.rng
    k = cat.catalogue()
    age = p.age_years(c.start_abs)
    record_p = np.where(p.underrecorded, c.underrecord_prob, c.record_prob)
    parts: list[Part] = []
    # conditions: coded at diagnosis, then at yearly reviews
    for name in CONDITION_NAMES:
        first = s.diag_month[name]
        idx = np.flatnonzero(first < NEVER)
        idx = idx[(first[idx] < c.months)]
        person, month = _reviews(c, idx, first[idx])
        keep = rng.random(len(person)) < 0.93
        code = k.condition_snomed[name].sample(rng, len(person))
        parts.append(_gp_rows(c, person[keep], month[keep], code[keep]))
    # frailty deficits: prevalent ones coded somewhere in the extract, new ones when they appear
    dm = s.deficit_month
    rows, ranks = np.nonzero(dm < c.months)
    deficit = s.deficit_order[rows, ranks]
    acquired = dm[rows, ranks]
    rec = rng.random(len(rows)) < record_p[rows]
    month = np.where(acquired < 0, rng.integers(0, c.months, len(rows)), acquired)
    again = rec & (rng.random(len(rows)) < 0.35)
    month2 = rng.integers(0, c.months, len(rows))
    first_code = _deficit_codes(rng, deficit)
    parts.append(_gp_rows(c, rows[rec], month[rec], first_code[rec]))
    later = again & (month2 > month)
    parts.append(_gp_rows(c, rows[later], month2[later], first_code[later]))
    # falls seen by the GP (GP-only falls, and some seen elsewhere)
    gp_fall = rng.random(len(falls.person)) < 0.25
    fcode = k.fall_snomed.sample(rng, len(falls.person))
    idx = np.flatnonzero(gp_fall | falls.gp_only)
    parts.append(
        {
            "person": p.index[falls.person[idx]],
            "event_date": falls.day[idx],
            "snomed_code": fcode[idx].astype(np.int64),
            "value": np.full(len(idx), np.nan),
        }
    )
    parts.extend(_observations(c, age, record_p))
    parts.extend(_proneness_codes(c, falls, age, record_p))
    # routine entries with codes no list names
    rate = np.where(age >= 65, 0.25, np.where(age >= 18, 0.08, 0.05))
    person, month = _poisson_rows(c, rate)
    other = k.snomed.indices(k.other_snomed)
    parts.append(_gp_rows(c, person, month, other[rng.integers(0, len(other), len(person))]))
    return _concat(parts)


# Codes that reveal gait and balance impairment (People.z_gait), the recordable part of
# fall-proneness, for people aged 50+: (codes, log monthly rate at 75, loading on z_gait,
# change per decade of age). Stated assumptions: about 8% of people aged 65+ get a gait or
# balance code in two years (a third of those with z_gait above 1.5), fewer at practices that
# under-record; dizziness and falls assessments are rarer and less tied to gait.
# In the catalogue's order of `proneness` draws: gait or balance, dizziness, falls assessment.
PRONENESS_CODES: tuple[tuple[float, float, float], ...] = (
    (-6.0, 1.1, 0.5),
    (-6.6, 0.7, 0.3),
    (-7.2, 0.9, 0.6),
)
ASSESSED_AFTER_FALL = 0.25  # a recorded fall leads to a falls assessment within 3 months


def _proneness_codes(c: Chunk, falls: Falls, age: np.ndarray, record_p: np.ndarray) -> list[Part]:
    p, rng = c.p, c.rng
    a = (age - 75.0) / 10.0
    seen = np.where(age >= 50, record_p / c.record_prob, 0.0)
    parts: list[Part] = []
    draws = cat.catalogue().proneness
    for draw, (log_rate, gait, per_decade) in zip(draws, PRONENESS_CODES, strict=True):
        rate = seen * np.exp(log_rate + gait * p.z_gait + per_decade * a)
        person, month = _poisson_rows(c, rate)
        parts.append(_gp_rows(c, person, month, draw.sample(rng, len(person))))
    after = np.flatnonzero(rng.random(len(falls.person)) < ASSESSED_AFTER_FALL)
    person = falls.person[after]
    month = falls.month[after] + rng.integers(0, 3, len(after))
    parts.append(_gp_rows(c, person, month, draws[2].sample(rng, len(person))))
    return parts


def _deficit_codes(rng: np.random.Generator, deficit: np.ndarray) -> np.ndarray:
    out = np.zeros(len(deficit), dtype=np.int64)
    draws = cat.catalogue().deficit_snomed
    for k, name in enumerate(cat.GENERIC_DEFICITS):
        sel = deficit == k
        out[sel] = draws[name].sample(rng, int(sel.sum()))
    return out


def _observations(c: Chunk, age: np.ndarray, record_p: np.ndarray) -> list[Part]:
    p, rng = c.p, c.rng
    k = cat.catalogue()
    codes = k.codes
    adult = age >= 18
    parts: list[Part] = []
    person, month = _poisson_rows(c, np.where(adult, np.where(age >= 65, 0.06, 0.03), 0.0))
    bmi = np.round(p.bmi[person] + rng.normal(0, 0.8, len(person)), 1)
    code = np.full(len(person), k.snomed.index(min(codes.bmi)))
    parts.append(_gp_rows(c, person, month, code, np.clip(bmi, 12, 80)))
    person, month = _poisson_rows(c, np.where(adult, 0.025, 0.0))
    heavy = p.heavy_drinker[person]
    units = np.where(heavy, rng.integers(30, 90, len(person)), rng.integers(0, 15, len(person)))
    code = np.full(len(person), k.snomed.index(min(codes.alcohol_units)))
    parts.append(_gp_rows(c, person, month, code, units))
    person, month = _poisson_rows(c, np.where(adult, 0.035, 0.0))
    status = np.where(p.smoker[person], 0, np.where(p.ex_smoker[person], 1, 2))
    code = np.zeros(len(person), dtype=np.int64)
    for level, name in enumerate(("smoking_current", "smoking_ex", "smoking_never")):
        sel = status == level
        code[sel] = k.snomed_draw(name).sample(rng, int(sel.sum()))
    parts.append(_gp_rows(c, person, month, code))
    idx = np.flatnonzero(p.heavy_drinker & (rng.random(p.n) < 0.6))
    heavy = k.snomed.indices(sorted(codes.heavy_drinker))
    code = heavy[rng.integers(0, len(heavy), len(idx))]
    parts.append(_gp_rows(c, idx, rng.integers(0, c.months, len(idx)), code))
    # a frailty diagnosis for moderately or severely frail people at recording practices
    month = rng.integers(0, c.months, p.n)
    d = frailty(c.s.base, 0) * np.exp(0.055 * month / 12.0)
    idx = np.flatnonzero((age >= 65) & (d >= 9) & (rng.random(p.n) < 0.4 * record_p))
    severe = d[idx] >= 13
    code = np.where(
        severe,
        k.snomed_draw("frailty_severe").sample(rng, len(idx)),
        k.snomed_draw("frailty_moderate").sample(rng, len(idx)),
    )
    parts.append(_gp_rows(c, idx, month[idx], code))
    return parts


# --- prescriptions -------------------------------------------------------------------------


def prescription_part(c: Chunk) -> Part:
    p, s, rng = c.p, c.s, c.rng
    med_index = cat.catalogue().med_index
    starts_p, starts_m, starts_med = [], [], []
    person, med = np.nonzero(s.regime)
    starts_p.append(person)
    starts_m.append(np.full(len(person), -1))
    starts_med.append(med)
    for cond, name, chance in cat.CONDITION_MEDICINES:
        first = s.diag_month[cond]
        idx = np.flatnonzero((first >= 0) & (first < c.months) & (rng.random(p.n) < chance))
        starts_p.append(idx)
        starts_m.append(first[idx])
        starts_med.append(np.full(len(idx), med_index[name]))
    for deficit, name, chance in cat.DEFICIT_MEDICINES:
        col = cat.GENERIC_DEFICITS.index(deficit)
        rank = np.argmax(s.deficit_order == col, axis=1)
        month = s.deficit_month[np.arange(p.n), rank]
        idx = np.flatnonzero((month >= 0) & (month < c.months) & (rng.random(p.n) < chance))
        starts_p.append(idx)
        starts_m.append(month[idx])
        starts_med.append(np.full(len(idx), med_index[name]))
    person = np.concatenate(starts_p)
    first = np.concatenate(starts_m)
    med = np.concatenate(starts_med)
    # repeat issues every 2 or 3 months from a random phase
    period = rng.integers(2, 4, len(person))
    phase = np.where(first < 0, rng.integers(0, 3, len(person)), first)
    last = _last_month(c)[person]
    count = np.maximum(0, (last - phase) // period + 1)
    rows = np.repeat(np.arange(len(person)), count)
    step = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    month = phase[rows] + step * period[rows]
    who = person[rows]
    # acute courses of antibiotics
    age = p.age_years(c.start_abs)
    acute_p, acute_m = _poisson_rows(c, np.where(age >= 65, 0.04, 0.02))
    who = np.concatenate([who, acute_p])
    month = np.concatenate([month, acute_m])
    meds = np.concatenate([med[rows], np.full(len(acute_p), med_index["amoxicillin"])])
    return {
        "person": p.index[who],
        "issue_date": c.date(who, month, rng.random(len(who))),
        "bnf_code": meds.astype(np.int64),
        "medicine": meds.astype(np.int64),
    }
