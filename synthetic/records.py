"""Turn one chunk's latent state and events into rows of the contract tables.

Rows are held as `Part`s: dicts of numpy arrays. String columns hold positions in a
vocabulary (-1 for empty), dates hold days since 1970-01-01 (NO_DATE for empty), the
person is the global person number; ids and strings are made once, at writing time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from synthetic import catalogue as cat
from synthetic.baseline import Setup
from synthetic.people import CONDITION_NAMES, People
from synthetic.process import Events, frailty, month_rates

Part = dict[str, np.ndarray]
NO_DATE = np.iinfo(np.int32).min

AE_DISPOSALS = ("admitted", "discharged", "referred", "left", "died")
AMBULANCE_CATEGORIES = (
    "fall",
    "long_lie",
    "breathing",
    "chest_pain",
    "stroke",
    "collapse",
    "other",
)
CARE_SERVICES = (
    "assessment", "home_care", "reablement", "telecare", "day_care", "residential", "nursing",
    "equipment",
)  # fmt: skip
EQUIPMENT = CARE_SERVICES.index("equipment")
# Mobility equipment and adaptations from social care (walking aids, rails, bathing aids) for
# people aged 65+, revealing gait impairment (People.z_gait): held at the start with logit
# -3.6 + 0.9 z_gait + 0.6 per decade past 75 + 0.05 per deficit; new ones at log monthly rate
# -7.0 + 0.9 z_gait + 0.5 per decade + 0.04 per deficit, and after 12% of recorded falls
# (stated assumptions: about 12% of people aged 65+ hold equipment).
EQUIPMENT_AFTER_FALL = 0.12


@cache
def vocabs() -> dict[tuple[str, str], tuple[str, ...]]:
    """String columns stored as positions: (table, column) -> vocabulary."""
    k = cat.catalogue()
    return {
        ("gp_event", "snomed_code"): k.snomed.values,
        ("prescription", "bnf_code"): tuple(m[0] for m in k.medicines),
        ("prescription", "medicine"): tuple(m[1] for m in k.medicines),
        ("hospital_episode", "admission_method"): ("emergency", "elective"),
        ("hospital_episode", "main_specialty"): k.specialty.values,
        **{("hospital_episode", f"diag_{n:02d}"): k.icd.values for n in range(1, 7)},
        ("ae_attendance", "diagnosis_code"): k.icd.values,
        ("ae_attendance", "injury_cause"): k.icd.values,
        ("ae_attendance", "disposal"): AE_DISPOSALS,
        ("ambulance_incident", "category"): AMBULANCE_CATEGORIES,
        ("social_care", "service_type"): CARE_SERVICES,
    }


@dataclass
class Calendar:
    """Month starts (days since 1970-01-01) for months -120 .. months+24 of the extract."""

    offset: int
    starts: np.ndarray
    lengths: np.ndarray
    end_day: int  # the extract date

    @classmethod
    def build(cls, start_abs: int, months: int) -> Calendar:
        ms = np.arange(start_abs - 120, start_abs + months + 26)
        starts = (ms // 12 - 1970) * 12 + ms % 12  # months since 1970-01
        days = np.array(starts, dtype="datetime64[M]").astype("datetime64[D]").astype(np.int64)
        return cls(
            offset=120,
            starts=days[:-1],
            lengths=np.diff(days),
            end_day=int(days[120 + months] - 1),
        )

    def day(self, month: np.ndarray, frac: np.ndarray) -> np.ndarray:
        m = np.asarray(month) + self.offset
        return self.starts[m] + np.floor(frac * self.lengths[m]).astype(np.int64)

    def month_end(self, month: np.ndarray) -> np.ndarray:
        m = np.asarray(month) + self.offset
        return self.starts[m] + self.lengths[m] - 1


@dataclass
class Chunk:
    p: People
    s: Setup
    ev: Events
    cal: Calendar
    months: int
    start_abs: int
    rng: np.random.Generator
    death_day: np.ndarray  # per person, a far future day when alive at the end
    record_prob: float
    underrecord_prob: float

    def alive_months(self) -> np.ndarray:
        d = self.ev.death_month
        return np.where(d >= 0, d + 1, self.months)

    def date(self, person: np.ndarray, month: np.ndarray, frac: np.ndarray) -> np.ndarray:
        return np.minimum(self.cal.day(month, frac), self.death_day[person])


def make_chunk(
    p: People,
    s: Setup,
    ev: Events,
    cal: Calendar,
    months: int,
    start_abs: int,
    rng: np.random.Generator,
    record_prob: float,
    underrecord_prob: float,
) -> Chunk:
    d = ev.death_month
    dead = d >= 0
    death_day = np.full(p.n, 10**7, dtype=np.int64)
    death_day[dead] = cal.day(d[dead], rng.random(int(dead.sum())))
    return Chunk(p, s, ev, cal, months, start_abs, rng, death_day, record_prob, underrecord_prob)


def _cat(arrays: list[np.ndarray], dtype: type | None = None) -> np.ndarray:
    out = np.concatenate(arrays) if arrays else np.zeros(0)
    return out.astype(dtype) if dtype is not None else out


def _choice(rng: np.random.Generator, values: tuple[str, ...], n: int, vocab: tuple[str, ...]):
    pos = np.array([vocab.index(v) for v in values], dtype=np.int32)
    return pos[rng.integers(0, len(pos), n)]


def _poisson_rows(c: Chunk, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Events at `rate` a month while alive: (local person, month) pairs."""
    alive = c.alive_months()
    counts = c.rng.poisson(rate * alive)
    person = np.repeat(np.arange(c.p.n), counts)
    month = np.floor(c.rng.random(len(person)) * alive[person]).astype(np.int64)
    return person, month


# --- person and death -----------------------------------------------------------------------


def person_part(c: Chunk) -> Part:
    p = c.p
    birth = np.array(p.birth_month - 1970 * 12, dtype="datetime64[M]")
    return {
        "person": p.index,
        "birth_month": birth.astype("datetime64[D]").astype(np.int64),
        "sex": np.where(p.female, "F", "M"),
        "ethnicity": np.where(p.ethnicity_recorded, p.ethnicity, -1),
        "lsoa_code": p.lsoa,
        "imd_decile": p.imd.astype(np.int64),
        "district": p.district,
        "practice_code": p.practice,
        "gp_system": p.practice,  # mapped through the practice at writing time
        "lives_alone": np.where(p.lives_alone_recorded, p.lives_alone.astype(np.int8), -1),
        "informal_carer": np.where(p.informal_carer_recorded, p.informal_carer.astype(np.int8), -1),
    }


def death_part(c: Chunk) -> Part:
    dead = np.flatnonzero(c.ev.death_month >= 0)
    return {"person": c.p.index[dead], "date_of_death": c.death_day[dead]}


# --- falls: one event, written into every service that saw it, on the same day -------------


@dataclass
class Falls:
    person: np.ndarray
    month: np.ndarray
    day: np.ndarray
    ftype: np.ndarray
    admitted: np.ndarray
    cause: np.ndarray  # ICD position of the W code
    injury: np.ndarray  # ICD position of the injury or fracture
    ambulance: np.ndarray  # seen by an ambulance crew
    conveyed: np.ndarray
    long_lie: np.ndarray
    ae: np.ndarray  # attended A&E
    disposal: np.ndarray  # A&E disposal position
    gp_only: np.ndarray  # seen only by the GP


def falls_of(c: Chunk) -> Falls:
    ev, rng = c.ev, c.rng
    person = _cat(ev.fall_person, np.int64)
    month = _cat(ev.fall_month, np.int64)
    ftype = _cat(ev.fall_type, np.int8)
    n = len(person)
    k = cat.catalogue()
    cause = k.fall_causes.sample(rng, n)
    injury = np.select(
        [ftype == 0, ftype == 1],
        [
            _choice(rng, k.hip_fractures, n, k.icd.values),
            _choice(rng, k.other_fractures, n, k.icd.values),
        ],
        _choice(rng, k.fall_injuries, n, k.icd.values),
    )
    day = c.date(person, month, rng.random(n))
    adm = _cat(ev.fall_admitted, bool)
    u = rng.random((5, n))
    # not admitted: ambulance only / ambulance then A&E / A&E only / GP only
    route = np.where(adm, 1, np.searchsorted([0.30, 0.60, 0.80], u[0]))
    amb = np.where(adm, u[1] < 0.85, route <= 1)
    ae = np.where(adm, u[2] < 0.95, (route == 1) | (route == 2)) | (adm & ~amb)
    return Falls(
        person=person,
        month=month,
        day=day,
        ftype=ftype,
        admitted=adm,
        cause=cause,
        injury=injury,
        ambulance=amb,
        conveyed=np.where(adm, True, route == 1),
        long_lie=u[4] < 0.15,
        ae=ae,
        disposal=np.where(adm, 0, np.where(u[3] < 0.85, 1, 2)),
        gp_only=~adm & (route == 3),
    )


# --- hospital episodes ---------------------------------------------------------------------


def _condition_icd_matrix(c: Chunk, person: np.ndarray, month: np.ndarray) -> np.ndarray:
    """(rows, K) ICD positions of each person's diagnosed conditions, -1 if not."""
    cols = []
    draws = cat.catalogue().condition_icd
    for name in CONDITION_NAMES:
        known = c.s.diag_month[name][person] <= month
        cols.append(np.where(known, draws[name].sample(c.rng, len(person)), -1))
    return np.stack(cols, axis=1) if cols else np.zeros((len(person), 0), dtype=np.int64)


def _secondary(c: Chunk, person: np.ndarray, month: np.ndarray, slots: int) -> np.ndarray:
    """Up to `slots` secondary diagnoses per row from the person's known conditions."""
    mat = _condition_icd_matrix(c, person, month)
    key = np.where(mat >= 0, c.rng.random(mat.shape), 2.0)
    order = np.argsort(key, axis=1)[:, :slots]
    picked = np.take_along_axis(mat, order, axis=1)
    if picked.shape[1] < slots:
        pad = np.full((len(person), slots - picked.shape[1]), -1)
        picked = np.concatenate([picked, pad], axis=1)
    return picked


def _los(rng: np.random.Generator, long_: np.ndarray, hip: np.ndarray) -> np.ndarray:
    n = len(long_)
    short = np.minimum(rng.geometric(np.where(hip, 0.09, 0.2), n) - 1, 21)
    longer = 22 + np.floor(rng.gamma(1.5, 14.0, n)).astype(np.int64)
    return np.where(long_, np.minimum(longer, 180), short)


def hospital_part(c: Chunk, falls: Falls) -> tuple[Part, Part]:
    """Emergency and elective spells, and the care that starts after a crisis."""
    ev, rng = c.ev, c.rng
    k = cat.catalogue()
    person = _cat(ev.adm_person, np.int64)
    month = _cat(ev.adm_month, np.int64)
    is_fall = _cat(ev.adm_fall, bool)
    long_ = _cat(ev.adm_long, bool)
    care = _cat(ev.adm_care, bool)
    home = _cat(ev.adm_home, bool)
    n = len(person)
    # fall admissions take the day and injury of their fall (falls admitted, in the same order)
    fall_adm = np.flatnonzero(falls.admitted)
    day = c.date(person, month, rng.random(n))
    diag = np.full((n, 6), -1, dtype=np.int64)
    sec = _secondary(c, person, month, 3)
    hip = np.zeros(n, dtype=bool)
    fall_rows = np.flatnonzero(is_fall)
    # order of fall admissions in ev equals order of admitted falls (both by month, person)
    key_adm = month[fall_rows] * (1 << 32) + person[fall_rows]
    key_fall = falls.month[fall_adm] * (1 << 32) + falls.person[fall_adm]
    match = fall_adm[np.argsort(key_fall, kind="stable")]
    fall_rows = fall_rows[np.argsort(key_adm, kind="stable")]
    day[fall_rows] = falls.day[match]
    diag[fall_rows, 0] = falls.injury[match]
    hip[fall_rows] = falls.ftype[match] == 0
    fracture = falls.ftype[match] < 2
    with_w = ~fracture | (rng.random(len(fall_rows)) < 0.8)
    other = np.flatnonzero(~is_fall)
    cond_primary = sec[other, 0]
    use_cond = (cond_primary >= 0) & (rng.random(len(other)) < 0.5)
    acute = _choice(rng, k.acute_diagnoses, len(other), k.icd.values)
    diag[other, 0] = np.where(use_cond, cond_primary, acute)
    diag[:, 1:4] = sec
    # when a condition is the primary diagnosis, the others move up one position
    shifted = other[use_cond]
    diag[shifted, 1:3] = sec[shifted, 1:3]
    diag[shifted, 3] = -1
    # the W code follows the recorded conditions (secondary positions fill without gaps)
    w_pos = 1 + (sec[fall_rows] >= 0).sum(axis=1)
    diag[fall_rows[with_w], w_pos[with_w]] = falls.cause[match[with_w]]
    frail = frailty(c.s.base, 0)[person[fall_rows]] > 6
    r296 = frail & (rng.random(len(fall_rows)) < 0.4)
    r_pos = w_pos + with_w
    diag[fall_rows[r296], r_pos[r296]] = cat.catalogue().icd.index(
        cat.catalogue().codes.tendency_to_fall_icd10[0]
    )
    los = _los(rng, long_, hip)
    discharge = np.minimum(day + los, c.death_day[person])
    discharge = np.where(discharge > c.cal.end_day, NO_DATE, discharge)
    specialty = np.where(
        is_fall,
        _choice(rng, k.fall_specialties, n, k.specialty.values),
        _choice(rng, k.emergency_specialties, n, k.specialty.values),
    )
    emergency: Part = {
        "person": c.p.index[person],
        "admission_date": day,
        "discharge_date": discharge,
        "admission_method": np.zeros(n, dtype=np.int64),
        "main_specialty": specialty,
        **{f"diag_{k + 1:02d}": diag[:, k] for k in range(6)},
    }
    # high-intensity care or a care home, starting at discharge within the admission's month
    cp = np.flatnonzero(care)
    start = np.minimum(
        day[cp] + los[cp], np.minimum(c.cal.month_end(month[cp]), c.death_day[person[cp]])
    )
    crisis_care = _care_rows(c, person[cp], start, home[cp])
    return _concat([emergency, elective_part(c)]), crisis_care


def elective_part(c: Chunk) -> Part:
    p, rng = c.p, c.rng
    k = cat.catalogue()
    r = month_rates(p, c.s.base, c.start_abs, c.months // 2, c.s.structure)
    rate = r.po * 0.9
    person, month = _poisson_rows(c, rate)
    n = len(person)
    day = c.date(person, month, rng.random(n))
    discharge = np.minimum(day + rng.integers(0, 5, n), c.death_day[person])
    discharge = np.where(discharge > c.cal.end_day, NO_DATE, discharge)
    sec = _secondary(c, person, month, 2)
    return {
        "person": p.index[person],
        "admission_date": day,
        "discharge_date": discharge,
        "admission_method": np.ones(n, dtype=np.int64),
        "main_specialty": _choice(rng, k.elective_specialties, n, k.specialty.values),
        "diag_01": _choice(rng, k.elective_diagnoses, n, k.icd.values),
        "diag_02": sec[:, 0],
        "diag_03": sec[:, 1],
        **{f"diag_{k:02d}": np.full(n, -1) for k in (4, 5, 6)},
    }


# --- A&E and ambulance ---------------------------------------------------------------------


def ae_ambulance_parts(c: Chunk, falls: Falls, emergency: Part) -> tuple[Part, Part]:
    rng, p = c.rng, c.p
    fa = np.flatnonzero(falls.ae)
    fall_ae: Part = {
        "person": p.index[falls.person[fa]],
        "arrival_date": falls.day[fa],
        "diagnosis_code": np.where(falls.ftype[fa] < 2, falls.injury[fa], -1),
        "injury_cause": falls.cause[fa],
        "disposal": falls.disposal[fa],
    }
    fb = np.flatnonzero(falls.ambulance)
    fall_amb: Part = {
        "person": p.index[falls.person[fb]],
        "incident_date": falls.day[fb],
        "category": np.where(falls.long_lie[fb], 1, 0),
        "conveyed": falls.conveyed[fb],
    }
    # other emergency admissions mostly come through A&E, some by ambulance
    is_other = emergency["admission_method"] == 0
    diag1 = emergency["diag_01"]
    k = cat.catalogue()
    fall_like = np.isin(diag1, k.icd.indices((*k.hip_fractures, *k.other_fractures,
                                              *k.fall_injuries)))  # fmt: skip
    rows = np.flatnonzero(is_other & ~fall_like)
    via_ae = rows[rng.random(len(rows)) < 0.9]
    adm_ae: Part = {
        "person": emergency["person"][via_ae],
        "arrival_date": emergency["admission_date"][via_ae],
        "diagnosis_code": diag1[via_ae],
        "injury_cause": np.full(len(via_ae), -1),
        "disposal": np.zeros(len(via_ae), dtype=np.int64),
    }
    via_amb = rows[rng.random(len(rows)) < 0.5]
    adm_amb: Part = {
        "person": emergency["person"][via_amb],
        "incident_date": emergency["admission_date"][via_amb],
        "category": rng.integers(2, 7, len(via_amb)),
        "conveyed": np.ones(len(via_amb), dtype=bool),
    }
    # attendances and call-outs that are not falls and do not lead to admission
    r = month_rates(p, c.s.base, c.start_abs, c.months // 2, c.s.structure)
    d = frailty(c.s.base, c.months // 2)
    a = (p.age_years(c.start_abs) - 75) / 10
    rate = np.exp(-4.3 + 0.2 * a + 0.05 * np.minimum(d, 20) + 0.2 * p.z_frail + 0.25 * p.smoker)
    rate = rate + 0.5 * r.po
    person, month = _poisson_rows(c, rate)
    m = len(person)
    injured = rng.random(m) < 0.3
    other_ae: Part = {
        "person": p.index[person],
        "arrival_date": c.date(person, month, rng.random(m)),
        "diagnosis_code": np.where(
            rng.random(m) < 0.75,
            _choice(rng, k.acute_diagnoses, m, k.icd.values),
            -1,
        ),
        "injury_cause": np.where(injured, _choice(rng, k.other_causes, m, k.icd.values), -1),
        "disposal": rng.choice(np.array([1, 2, 3]), size=m, p=[0.82, 0.12, 0.06]),
    }
    person, month = _poisson_rows(c, 0.25 * rate)
    m = len(person)
    other_amb: Part = {
        "person": p.index[person],
        "incident_date": c.date(person, month, rng.random(m)),
        "category": rng.integers(2, 7, m),
        "conveyed": np.zeros(m, dtype=bool),
    }
    return _concat([fall_ae, adm_ae, other_ae]), _concat([fall_amb, adm_amb, other_amb])


# --- social care ---------------------------------------------------------------------------


def _care_rows(c: Chunk, person: np.ndarray, start: np.ndarray, home: np.ndarray) -> Part:
    """Care home placements or home care of 14+ hours a week starting on `start`."""
    n = len(person)
    nursing = c.s.care_home_nursing[person]
    service = np.where(home, np.where(nursing, 6, 5), 1)
    hours = np.where(home, np.nan, 14.0 + np.round(c.rng.gamma(2.0, 5.0, n)))
    dd = c.death_day[person]
    return {
        "person": c.p.index[person],
        "service_type": service,
        "start_date": start,
        "end_date": np.where(dd <= c.cal.end_day, dd, NO_DATE),
        "hours_per_week": np.minimum(hours, 84.0),
    }


def social_care_part(c: Chunk, falls: Falls, emergency: Part, crisis_care: Part) -> Part:
    p, s, rng, ev = c.p, c.s, c.rng, c.ev
    parts = [crisis_care]
    # care without a crisis
    person = _cat(ev.care_person, np.int64)
    month = _cat(ev.care_month, np.int64)
    parts.append(
        _care_rows(
            c, person, c.date(person, month, rng.random(len(person))), _cat(ev.care_home, bool)
        )
    )
    # services already running at the start
    start_day = int(c.cal.starts[c.cal.offset])
    dd = c.death_day
    ongoing_end = np.where(dd <= c.cal.end_day, dd, NO_DATE)
    for mask, service, hours in (
        (s.resident0, np.where(s.care_home_nursing, 6, 5), np.nan),
        (s.home_care_hours0 > 0, 1, s.home_care_hours0),
        (s.telecare0, 3, np.nan),
    ):
        idx = np.flatnonzero(mask)
        parts.append(
            {
                "person": p.index[idx],
                "service_type": np.broadcast_to(service, p.n)[idx].astype(np.int64),
                "start_date": start_day - rng.integers(30, 1500, len(idx)),
                "end_date": ongoing_end[idx],
                "hours_per_week": np.broadcast_to(np.asarray(hours, dtype=float), p.n)[idx],
            }
        )
    # after an emergency admission: assessment, reablement, low-hour home care
    local = emergency["person"] - p.index[0]
    emerg = emergency["admission_method"] == 0
    discharge = emergency["discharge_date"]
    ok = emerg & (discharge != NO_DATE)
    u = rng.random(len(local))
    for service, lo, hi, days in ((0, 0.0, 0.3, 0), (2, 0.3, 0.5, 42), (1, 0.5, 0.56, -1)):
        idx = np.flatnonzero(ok & (u >= lo) & (u < hi) & (discharge <= dd[local]))
        start = discharge[idx]
        end = np.where(days >= 0, start + days, NO_DATE)
        end = np.where((end > c.cal.end_day) | (end > dd[local[idx]]), NO_DATE, end)
        hours = np.where(service == 1, rng.integers(2, 14, len(idx)).astype(float), np.nan)
        if service == 2:
            hours = np.full(len(idx), np.nan)
        parts.append(
            {
                "person": emergency["person"][idx],
                "service_type": np.full(len(idx), service, dtype=np.int64),
                "start_date": start,
                "end_date": end,
                "hours_per_week": hours,
            }
        )
    parts.extend(_equipment(c, falls))
    # telecare after a fall
    idx = np.flatnonzero(rng.random(len(falls.person)) < 0.15)
    start = falls.day[idx] + rng.integers(7, 40, len(idx))
    who = falls.person[idx]
    keep = (start <= c.cal.end_day) & (start <= dd[who])
    parts.append(
        {
            "person": p.index[who[keep]],
            "service_type": np.full(int(keep.sum()), 3, dtype=np.int64),
            "start_date": start[keep],
            "end_date": np.where(dd[who[keep]] <= c.cal.end_day, dd[who[keep]], NO_DATE),
            "hours_per_week": np.full(int(keep.sum()), np.nan),
        }
    )
    return _concat(parts)


def _equipment(c: Chunk, falls: Falls) -> list[Part]:
    p, rng = c.p, c.rng
    age = p.age_years(c.start_abs)
    a = (age - 75.0) / 10.0
    d0 = c.s.base.d0
    old = age >= 65
    logit = -3.6 + 0.9 * p.z_gait + 0.6 * a + 0.05 * d0
    held = old & (rng.random(p.n) < 1.0 / (1.0 + np.exp(-logit)))
    start_day = int(c.cal.starts[c.cal.offset])
    first = np.flatnonzero(held)
    rate = np.where(old, np.exp(-7.0 + 0.9 * p.z_gait + 0.5 * a + 0.04 * d0), 0.0)
    person, month = _poisson_rows(c, rate)
    after = np.flatnonzero(rng.random(len(falls.person)) < EQUIPMENT_AFTER_FALL)
    late = falls.person[after]
    late_day = falls.day[after] + rng.integers(7, 60, len(after))
    who = np.concatenate([first, person, late])
    day = np.concatenate(
        [
            start_day - rng.integers(30, 1500, len(first)),
            c.date(person, month, rng.random(len(person))),
            late_day,
        ]
    )
    keep = (day <= c.cal.end_day) & (day <= c.death_day[who])
    n = int(keep.sum())
    return [
        {
            "person": p.index[who[keep]],
            "service_type": np.full(n, EQUIPMENT, dtype=np.int64),
            "start_date": day[keep],
            "end_date": np.full(n, NO_DATE, dtype=np.int64),
            "hours_per_week": np.full(n, np.nan),
        }
    ]


# --- fire and rescue home visits -----------------------------------------------------------


def fire_part(c: Chunk) -> Part:
    p, rng = c.p, c.rng
    age = p.age_years(c.start_abs)
    a = (age - 75) / 10
    rate = np.where(
        age >= 60, np.exp(-5.6 + 0.5 * a + 0.8 * p.lives_alone + 0.7 * p.smoker), 0.0004
    )
    person, month = _poisson_rows(c, rate)
    n = len(person)
    u = rng.random((5, n))
    d = frailty(c.s.base, c.months // 2)[person]
    trip = np.where(u[0] < 0.88, p.home_hazard[person], ~p.home_hazard[person])
    mobility = (d + 2.0 * rng.standard_normal(n)) > 6
    alarm = u[1] < 0.85
    return {
        "person": p.index[person],
        "visit_date": c.date(person, month, u[2]),
        "trip_hazards": trip,
        "smoke_alarm_working": alarm,
        "smoker": p.smoker[person] & (u[3] < 0.95),
        "mobility_concern": mobility,
        "referral_made": (trip | mobility | ~alarm) & (u[4] < 0.7),
    }


def _concat(parts: list[Part]) -> Part:
    keys = list(parts[0])
    return {k: np.concatenate([np.asarray(part[k]) for part in parts]) for k in keys}
