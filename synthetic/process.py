"""The latent monthly health process behind the records, and its exact truth.

Approach (why the truth is exact, not Monte Carlo). Every monthly probability that drives an
outcome is a function of (a) static traits and latent conditions, present for the whole
extract (the records reveal them as diagnoses that appear over time), and the medicines
taken at the start (number, falls-risk-increasing classes); (b) age, which moves
deterministically; (c) latent frailty D(t), a deficit count that grows deterministically
with age (D(t) = D0 * exp(0.055 * years since start)); and (d) one dynamic state F, the
recorded falls since the records began (0, 1, 2 or more). Everything else is an emission that
reveals the latent state but never feeds back: diagnosis and deficit codes, gait and balance
codes, falls assessments and mobility equipment, later prescriptions, A&E and ambulance use
that is not a fall, low-intensity care, telecare after falls, fire visits. Home care, telecare
and recent A&E use are therefore predictors by association (they share the latent frailty),
not causes.

Falls: the outcome is the first recorded fall in the 12 months; until it, F is unchanged, so
P(fall) = sum_m S_D(m) S_F(m) p_F(m), with S_F and S_D products of deterministic monthly
probabilities. Death is independent of the event path (its hazard depends on age, D(t) and
latent conditions only); within a month, events come before death.

Complex dependency: each month a fall (which may be admitted) and an unrelated emergency
admission may happen; each admission is followed by a long stay (> 21 days) or by a
high-intensity care package or care home with known probabilities (the care starts within
the admission's month), and a package or care home can also start without a crisis. A Markov
chain over (F, emergency admissions so far 0..2) with an absorbing "event" state gives
P(event) exactly; deaths enter through S_D as above.

Structure. In the additive county (the control) every log-hazard and logit is a sum of
traits, the logistic baseline's own form. The realistic county (the default) adds effects
that real linked data show and that a model linear in the features cannot represent; their
sizes are in REALISTIC_FALLS and REALISTIC_CARE with their sources or stated assumptions, set
before any model was measured on the county:
- falls: the age slope doubles past 80; one recorded fall about doubles the hazard and
  recurrent falls multiply it by 3.5 (the additive county: 2.3 for any); falls-risk-increasing
  drugs weigh more with dementia or Parkinson's; medicines count past thresholds (5+, 10+)
  instead of linearly; underweight (BMI below 20) raises the hazard steeply;
- fracture: the share of falls that break a hip rises steeply past 80 and with low BMI;
- complex dependency: dementia with living alone and no informal carer drives care-home
  entry (at the start and later); long stays rise more steeply past moderate frailty.

Fall-proneness (People.z_fall) is half gait and balance impairment (z_gait), which GP codes,
falls assessments and social care equipment reveal in part, and half what no record shows
(z_unseen). `simulate` also returns the records reference: the same windows, on the same event
path, with z_unseen at its mean (records_only), i.e. the risk a model reading every record
perfectly could know; the truth keeps z_unseen. Both are written under truth/.

The same monthly probabilities (`month_rates`) drive both the simulated records and the
truth, so the truth is exact up to floating point (a brute-force test checks it). Gaps
between truth and written records: a long stay cut short by death in its first 21 days is
written with its true (short) length, and windows without 12 months of follow-up in the
extract get no realised event.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from features.outcomes import COMPLEX_DEPENDENCY, FALLS
from synthetic.people import People

FRAILTY_GROWTH = 0.055  # per year, log scale
FALL_TYPES = ("hip", "other_fracture", "other")
ADMIT_OTHER_FRACTURE = 0.4  # share of falls with another fragility fracture admitted
# one window for both outcomes: the horizon their definitions share (checked by simulate)
HORIZON_MONTHS = FALLS.horizon_months
ADMIT_OTHER_FALL = 0.12  # share of other falls admitted (hip fractures always are)
FALL_STATES = 3  # recorded falls since the records began: 0, 1, 2 or more

Structure = Literal["realistic", "additive"]
STRUCTURES: tuple[Structure, ...] = ("realistic", "additive")


@dataclass
class Baseline:
    """Person-level quantities fixed at the start of the extract (derived from People)."""

    d0: np.ndarray  # latent deficit count at the start
    n_meds: np.ndarray  # repeat medicines at the start
    n_frid: np.ndarray  # falls-risk-increasing drug classes at the start


@dataclass
class Rates:
    """Monthly probabilities for one month, for every person of the chunk."""

    pf: np.ndarray  # (FALL_STATES, n) recorded fall, by recorded falls since the records began
    p_hip: np.ndarray  # a fall is a hip fracture
    p_ofx: np.ndarray  # a fall is another fragility fracture
    q_adm: np.ndarray  # a fall is admitted as an emergency
    po: np.ndarray  # an emergency admission not caused by a fall
    ql_f: np.ndarray  # an admitted fall stays > 21 days
    ql_o: np.ndarray  # another emergency admission stays > 21 days
    qc: np.ndarray  # an admission is followed by high-intensity care or a care home
    pc: np.ndarray  # high-intensity care or a care home starts without a crisis
    pd: np.ndarray  # death
    p_home: np.ndarray  # a care start is a care home (else home care of 14+ hours a week)

    def fall(self, falls: np.ndarray) -> np.ndarray:
        """Each person's chance of a recorded fall this month, given their recorded falls."""
        return np.take_along_axis(self.pf, falls[None, :].astype(np.int64), axis=0)[0]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _hazard_p(log_h: np.ndarray) -> np.ndarray:
    return -np.expm1(-np.exp(log_h))


def frailty(base: Baseline, t: int) -> np.ndarray:
    """Latent deficit count in month t (months since the start)."""
    return base.d0 * np.exp(FRAILTY_GROWTH * t / 12.0)


def _past(x: np.ndarray | float, knot: float) -> np.ndarray:
    return np.maximum(np.asarray(x, dtype=float) - knot, 0.0)


def _fall_log_hazard(
    p: People, base: Baseline, age: np.ndarray, d: np.ndarray, structure: Structure
) -> np.ndarray:
    """Log-hazard of a recorded fall before any recorded fall (the history term is added
    by `_history`)."""
    a = (age - 75.0) / 10.0
    c = p.conditions
    white = (p.ethnicity == 0).astype(float)
    depriv = (5.5 - p.imd) / 4.5  # +1 most deprived, -1 least
    log_fall = (
        -7.0
        + 0.55 * a
        + 0.25 * p.female
        + 0.25 * white
        + 0.18 * depriv
        - 0.035 * (p.bmi - 27.0)
        + 0.30 * p.lives_alone
        + 0.35 * p.heavy_drinker
        + 0.55 * p.z_fall
        + 0.30 * p.home_hazard
        + 0.06 * d
        + 0.60 * c["dementia"]
        + 0.65 * c["parkinsons"]
        + 0.35 * c["stroke"]
        + 0.55 * c["multiple_sclerosis"]
        + 0.30 * c["urinary_incontinence"]
        + 0.30 * c["visual_impairment"]
        + 0.25 * c["depression"]
        + 0.12 * base.n_frid
    )
    if structure == "additive":
        log_fall = log_fall + 0.03 * base.n_meds
    else:
        neuro = c["dementia"] | c["parkinsons"]
        log_fall = (
            log_fall
            + REALISTIC_FALLS["age_past_80"] * _past(age, 80.0) / 10.0
            + REALISTIC_FALLS["frid_neuro"] * base.n_frid * neuro
            + REALISTIC_FALLS["meds_5"] * (base.n_meds >= 5)
            + REALISTIC_FALLS["meds_10"] * (base.n_meds >= 10)
            + REALISTIC_FALLS["underweight"] * _past(20.0 - p.bmi, 0.0)
            + REALISTIC_FALLS["level"]
        )
    return np.where(age < 18, log_fall - 1.0, log_fall)


def _history(structure: Structure) -> tuple[float, ...]:
    """Log-hazard added by 0, 1 and 2+ recorded falls since the records began."""
    if structure == "additive":
        return (0.0, 0.85, 0.85)
    return (0.0, REALISTIC_FALLS["one_fall"], REALISTIC_FALLS["recurrent_falls"])


# The realistic county's non-additive terms (log scale) and their sources. Sizes were set from
# the literature or as stated assumptions before any model was measured on the county.
REALISTIC_FALLS: dict[str, float] = {
    # the age slope doubles past 80 (injurious falls and hip fractures rise steeply with age)
    "age_past_80": 0.45,
    # a history of falls: about 2x after one recorded fall, 3.5x after recurrent falls
    # (Deandrea et al. 2010: OR 2.8 for any previous fall, higher for recurrent fallers)
    "one_fall": 0.70,
    "recurrent_falls": 1.25,
    # falls-risk-increasing drugs weigh more in dementia or Parkinson's (STOPPFall; stated size)
    "frid_neuro": 0.20,
    # polypharmacy by thresholds: 5+ and 10+ medicines (stated sizes, OR 1.3 and 1.7)
    "meds_5": 0.25,
    "meds_10": 0.28,
    # underweight: each BMI point below 20 adds 0.10 (stated; FRAX uses low BMI)
    "underweight": 0.10,
    # keeps the county's fall rate near the additive one (the terms above add risk on average)
    "level": -0.25,
}
REALISTIC_CARE: dict[str, float] = {
    # dementia with living alone and no informal carer: care-home entry (Luppa et al. 2010:
    # cognitive impairment the strongest predictor; living alone adds; stated size)
    "dementia_alone_no_carer": 0.9,
    "home_dementia_alone_no_carer": 0.2,  # added to the share of care starts that are homes
    # long stays rise more steeply past moderate frailty (9+ deficits; stated size)
    "long_stay_frail": 0.10,
    # fracture share: hip fractures rise steeply past 80 and with low BMI (FRAX; stated)
    "hip_age_past_80": 0.45,
    "hip_bmi": -0.05,
    # keeps the hip fracture rate near the additive county's (the age term adds on average)
    "hip_level": -0.35,
}


def month_rates(p: People, base: Baseline, start_abs: int, t: int, structure: Structure) -> Rates:
    age = p.age_years(start_abs + t)
    a = (age - 75.0) / 10.0
    d = frailty(base, t)
    c = p.conditions
    realistic = structure == "realistic"
    depriv = (5.5 - p.imd) / 4.5  # +1 most deprived, -1 least
    log_fall = _fall_log_hazard(p, base, age, d, structure)
    pf = np.stack([_hazard_p(log_fall + h) for h in _history(structure)])
    hip_terms = 0.45 * a + 0.4 * p.female + 0.7 * c["osteoporosis"]
    if realistic:
        hip_terms = (
            hip_terms
            + REALISTIC_CARE["hip_age_past_80"] * _past(age, 80.0) / 10.0
            + REALISTIC_CARE["hip_bmi"] * (p.bmi - 27.0)
            + REALISTIC_CARE["hip_level"]
        )
    p_hip = np.clip(0.012 * np.exp(hip_terms), 0, 0.4)
    p_ofx = np.clip(0.07 * np.exp(0.2 * a + 0.4 * p.female + 0.5 * c["osteoporosis"]), 0, 0.4)
    q_adm = p_hip + ADMIT_OTHER_FRACTURE * p_ofx + ADMIT_OTHER_FALL * (1.0 - p_hip - p_ofx)
    log_adm = (
        -5.6
        + 0.45 * a
        + 0.02 * d
        + 0.10 * p.z_frail
        + 0.55 * c["heart_failure"]
        + 0.50 * c["copd"]
        + 0.30 * c["ckd"]
        + 0.35 * c["complicated_diabetes"]
        + 0.15 * c["diabetes"]
        + 0.45 * c["liver_disease"]
        + 0.50 * c["cancer"]
        + 0.25 * c["dementia"]
        + 0.30 * c["hemiplegia"]
        + 0.15 * depriv
        + 0.15 * p.smoker
        + 0.25 * p.heavy_drinker
        + 0.02 * base.n_meds
    )
    log_adm = np.where(age < 18, log_adm - 0.5, log_adm)
    po = _hazard_p(log_adm)
    long_base = -3.5 + 0.45 * a + 0.04 * d + 0.5 * c["dementia"]
    if realistic:
        long_base = long_base + REALISTIC_CARE["long_stay_frail"] * _past(d, 9.0)
    ql_f = _sigmoid(long_base + 0.8)
    ql_o = _sigmoid(long_base)
    care_base = (
        0.55 * a
        + 0.05 * d
        + 0.8 * c["dementia"]
        + 0.45 * p.lives_alone
        - 0.35 * p.informal_carer
        + 0.15 * depriv
    )
    home_share = 0.2 + 0.3 * c["dementia"] + 0.01 * d
    if realistic:
        alone = c["dementia"] & p.lives_alone & ~p.informal_carer
        care_base = care_base + REALISTIC_CARE["dementia_alone_no_carer"] * alone
        home_share = home_share + REALISTIC_CARE["home_dementia_alone_no_carer"] * alone
    qc = np.where(age < 18, 0.0, _sigmoid(-3.1 + care_base))
    pc = np.where(age < 18, 0.0, _hazard_p(-8.3 + care_base + 0.35 * a))
    log_death = (
        -6.6
        + 0.95 * a
        + 0.04 * d
        + 0.25 * (~p.female)
        + 0.45 * c["heart_failure"]
        + 0.75 * c["cancer"]
        + 0.45 * c["dementia"]
        + 0.30 * c["copd"]
        + 0.25 * c["ckd"]
        + 0.30 * c["liver_disease"]
        + 0.10 * p.smoker
    )
    pd = _hazard_p(np.where(age < 30, -9.5, log_death))
    p_home = np.clip(home_share, 0.0, 0.8)
    return Rates(pf, p_hip, p_ofx, q_adm, po, ql_f, ql_o, qc, pc, pd, p_home)


@dataclass
class Window:
    """Exact outcome probabilities being accumulated for one index month."""

    month: int
    alive: np.ndarray
    resident: np.ndarray
    falls: np.ndarray  # recorded falls since the records began at the index month (0, 1, 2+)
    s_d: np.ndarray
    s_f: np.ndarray
    p_falls: np.ndarray
    chain: np.ndarray  # (n, FALL_STATES, 3): P(no event yet, falls, admissions 0..2)
    p_cd: np.ndarray

    @classmethod
    def open(cls, month: int, alive: np.ndarray, resident: np.ndarray, falls: np.ndarray):
        n = len(alive)
        chain = np.zeros((n, FALL_STATES, 3))
        chain[np.arange(n), falls.astype(np.int64), 0] = 1.0
        return cls(
            month=month,
            alive=alive.copy(),
            resident=resident.copy(),
            falls=falls.copy(),
            s_d=np.ones(n),
            s_f=np.ones(n),
            p_falls=np.zeros(n),
            chain=chain,
            p_cd=np.zeros(n),
        )

    def step(self, r: Rates) -> None:
        pf = r.fall(self.falls)
        self.p_falls += self.s_d * self.s_f * pf
        self.s_f *= 1.0 - pf
        before = self.chain.sum(axis=(1, 2))
        self.chain = chain_step(self.chain, r)
        self.p_cd += self.s_d * (before - self.chain.sum(axis=(1, 2)))
        self.s_d *= 1.0 - r.pd


def chain_step(chain: np.ndarray, r: Rates) -> np.ndarray:
    """One month of the complex-dependency chain over (recorded falls, admissions 0..2)."""
    new = np.zeros_like(chain)
    keep_c = 1.0 - r.pc
    no_f = 1.0 - r.ql_f - r.qc + r.ql_f * r.qc  # admitted fall does not trigger
    no_o = 1.0 - r.ql_o - r.qc + r.ql_o * r.qc
    po = r.po
    qa = r.q_adm
    for f in range(FALL_STATES):
        pf = r.pf[f]
        fell = min(f + 1, FALL_STATES - 1)
        # (probability, fall admissions, other admissions, falls afterwards)
        cases = (
            ((1 - pf) * (1 - po), 0, 0, f),
            ((1 - pf) * po, 0, 1, f),
            (pf * (1 - qa) * (1 - po), 0, 0, fell),
            (pf * (1 - qa) * po, 0, 1, fell),
            (pf * qa * (1 - po), 1, 0, fell),
            (pf * qa * po, 1, 1, fell),
        )
        for prob, fa, oa, f_new in cases:
            w = prob * keep_c * (no_f if fa else 1.0) * (no_o if oa else 1.0)
            for a in range(3):
                a_new = a + fa + oa
                if a_new < 3:
                    new[:, f_new, a_new] += chain[:, f, a] * w
    return new


@dataclass
class Events:
    """What happened, month by month, in the simulated chunk (local person numbers)."""

    death_month: np.ndarray  # -1 when alive at the end
    fall_person: list[np.ndarray] = field(default_factory=list)
    fall_month: list[np.ndarray] = field(default_factory=list)
    fall_type: list[np.ndarray] = field(default_factory=list)  # index into FALL_TYPES
    fall_admitted: list[np.ndarray] = field(default_factory=list)
    adm_person: list[np.ndarray] = field(default_factory=list)
    adm_month: list[np.ndarray] = field(default_factory=list)
    adm_fall: list[np.ndarray] = field(default_factory=list)  # admission caused by a fall
    adm_long: list[np.ndarray] = field(default_factory=list)
    adm_care: list[np.ndarray] = field(default_factory=list)  # followed by a CD care start
    adm_home: list[np.ndarray] = field(default_factory=list)  # that care is a care home
    care_person: list[np.ndarray] = field(default_factory=list)  # care without a crisis
    care_month: list[np.ndarray] = field(default_factory=list)
    care_home: list[np.ndarray] = field(default_factory=list)


@dataclass
class TruthRows:
    person: list[np.ndarray] = field(default_factory=list)
    month: list[np.ndarray] = field(default_factory=list)
    outcome: list[np.ndarray] = field(default_factory=list)  # 0 falls, 1 complex dependency
    prob: list[np.ndarray] = field(default_factory=list)

    def extend(self, chunk: TruthRows, index: np.ndarray) -> None:
        """Add one chunk's rows, its local person numbers turned into global ones."""
        self.person.extend(index[idx] for idx in chunk.person)
        self.month.extend(chunk.month)
        self.outcome.extend(chunk.outcome)
        self.prob.extend(chunk.prob)

    def add(self, other: TruthRows) -> None:
        """Add rows whose person numbers are already global (a chunk's from simulate_chunks)."""
        self.person.extend(other.person)
        self.month.extend(other.month)
        self.outcome.extend(other.outcome)
        self.prob.extend(other.prob)


def simulate(
    p: People,
    base: Baseline,
    start_abs: int,
    months: int,
    index_months: list[int],
    resident0: np.ndarray,
    rng: np.random.Generator,
    structure: Structure,
) -> tuple[Events, TruthRows, TruthRows]:
    """Run the monthly process; return the events, the exact truth rows and the records
    reference rows (the truth with every never-recorded latent at its population mean).

    Random numbers are drawn in the same amounts whatever the state, so a change in one
    person never changes another's path. The reference follows the same event path.
    """
    if COMPLEX_DEPENDENCY.horizon_months != HORIZON_MONTHS:
        raise ValueError("the county's truth needs both outcomes on one horizon")
    n = p.n
    alive = np.ones(n, dtype=bool)
    resident = resident0.copy()
    falls = np.zeros(n, dtype=np.int8)
    death_month = np.full(n, -1, dtype=np.int64)
    ev = Events(death_month=death_month)
    truth, reference = TruthRows(), TruthRows()
    recorded = records_only(p)
    windows: list[tuple[Window, Window]] = []
    last = max(index_months) + HORIZON_MONTHS if index_months else months
    for t in range(last):
        if t in index_months:
            windows.append(
                (Window.open(t, alive, resident, falls), Window.open(t, alive, resident, falls))
            )
        r = month_rates(p, base, start_abs, t, structure)
        r_ref = month_rates(recorded, base, start_abs, t, structure)
        for w, w_ref in windows:
            if w.month <= t < w.month + HORIZON_MONTHS:
                w.step(r)
                w_ref.step(r_ref)
        for w, w_ref in [pair for pair in windows if t == pair[0].month + HORIZON_MONTHS - 1]:
            _close(w, p, start_abs, truth)
            _close(w_ref, p, start_abs, reference)
        if t < months:
            _step(t, r, rng, alive, resident, falls, death_month, ev)
    return ev, truth, reference


def records_only(p: People) -> People:
    """The people with every latent that no record ever reveals set to its population mean:
    only the unseen part of fall-proneness (z_unseen, mean 0). Everything else shows in some
    record for some people (frailty as deficit codes, conditions as diagnoses, gait impairment
    as gait codes, assessments and equipment, home hazards at fire visits, lifestyle as codes),
    so it is kept: the reference is what a model reading every record perfectly could know."""
    return replace(p, z_unseen=np.zeros_like(p.z_unseen))


def _close(w: Window, p: People, start_abs: int, truth: TruthRows) -> None:
    """The window's probabilities for everyone alive at its start and old enough for the
    outcome's cohort; the cohort itself (care homes, a death on the index date) is chosen from
    the written records afterwards, by the outcome's own rule (synthetic/outcomes.py)."""
    age = np.floor((start_abs + w.month - p.birth_month) / 12.0)
    for code, cohort, prob in (
        (0, w.alive & (age >= FALLS.cohort.min_age), w.p_falls),
        (1, w.alive & (age >= COMPLEX_DEPENDENCY.cohort.min_age), w.p_cd),
    ):
        idx = np.flatnonzero(cohort)
        truth.person.append(idx)
        truth.month.append(np.full(len(idx), w.month, dtype=np.int64))
        truth.outcome.append(np.full(len(idx), code, dtype=np.int8))
        truth.prob.append(prob[idx])


def _step(
    t: int,
    r: Rates,
    rng: np.random.Generator,
    alive: np.ndarray,
    resident: np.ndarray,
    falls: np.ndarray,
    death_month: np.ndarray,
    ev: Events,
) -> None:
    n = len(alive)
    u = rng.random((11, n))
    fall = alive & (u[0] < r.fall(falls))
    ftype = np.where(u[1] < r.p_hip, 0, np.where(u[1] < r.p_hip + r.p_ofx, 1, 2))
    adm_p = np.select([ftype == 0, ftype == 1], [1.0, ADMIT_OTHER_FRACTURE], ADMIT_OTHER_FALL)
    fall_adm = fall & (u[2] < adm_p)
    oth = alive & (u[3] < r.po)
    can_care = ~resident
    long_f = fall_adm & (u[4] < r.ql_f)
    care_f = fall_adm & can_care & (u[5] < r.qc)
    long_o = oth & (u[6] < r.ql_o)
    care_o = oth & can_care & (u[7] < r.qc)
    spont = alive & can_care & (u[8] < r.pc)
    dies = alive & (u[9] < r.pd)
    home = u[10] < r.p_home
    idx = np.flatnonzero(fall)
    ev.fall_person.append(idx)
    ev.fall_month.append(np.full(len(idx), t, dtype=np.int64))
    ev.fall_type.append(ftype[idx].astype(np.int8))
    ev.fall_admitted.append(fall_adm[idx])
    admissions = ((fall_adm, long_f, care_f, True), (oth, long_o, care_o, False))
    for mask, long_, care, is_fall in admissions:
        idx = np.flatnonzero(mask)
        ev.adm_person.append(idx)
        ev.adm_month.append(np.full(len(idx), t, dtype=np.int64))
        ev.adm_fall.append(np.full(len(idx), is_fall))
        ev.adm_long.append(long_[idx])
        ev.adm_care.append(care[idx])
        ev.adm_home.append(home[idx])
    idx = np.flatnonzero(spont)
    ev.care_person.append(idx)
    ev.care_month.append(np.full(len(idx), t, dtype=np.int64))
    ev.care_home.append(home[idx])
    resident |= (care_f | care_o | spont) & home
    np.minimum(falls + fall, FALL_STATES - 1, out=falls, casting="unsafe")
    death_month[dies] = t
    alive &= ~dies
