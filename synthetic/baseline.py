"""What is already true when the extract begins: frailty, diagnoses, medicines, care."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic import catalogue as cat
from synthetic.people import CONDITION_NAMES, People
from synthetic.process import FRAILTY_GROWTH, REALISTIC_CARE, Baseline, Structure

NEVER = 10_000  # a month far beyond any extract


@dataclass
class Setup:
    """Baseline plus the latent schedules that the records reveal over time."""

    base: Baseline
    diag_month: dict[str, np.ndarray]  # -1 diagnosed before the start; NEVER if absent
    deficit_order: np.ndarray  # (n, G) deficit positions in order of accrual
    deficit_month: np.ndarray  # (n, G) month each is acquired (-1 before start, NEVER)
    regime: np.ndarray  # (n, M) repeat medicines at the start
    resident0: np.ndarray  # in a care home at the start
    care_home_nursing: np.ndarray
    home_care_hours0: np.ndarray  # 0 when none at the start
    telecare0: np.ndarray
    structure: Structure  # how traits combine in the monthly process (process.month_rates)


def prepare(p: People, rng: np.random.Generator, start_abs: int, structure: Structure) -> Setup:
    age = p.age_years(start_abs)
    adult = age >= 18
    n_cond = sum(p.conditions[c].astype(float) for c in CONDITION_NAMES)
    d0 = np.exp(np.log(6.0) + 0.045 * (age - 75.0) + 0.25 * p.z_frail + 0.07 * n_cond)
    d0 = np.where(adult, d0, d0 * 0.2)
    diag = _diagnoses(p, rng)
    order, dmonth = _deficits(rng, d0)
    regime = _regime(p, rng, diag, order, dmonth, age)
    n_meds = regime.sum(axis=1).astype(float)
    n_frid = regime[:, cat.catalogue().frid_mask].sum(axis=1).astype(float)
    base = Baseline(d0=d0, n_meds=n_meds, n_frid=n_frid)
    a = (age - 75.0) / 10.0
    dem = p.conditions["dementia"]
    u = rng.random((4, p.n))
    logit_home = -5.9 + 1.1 * a + 0.08 * d0 + 1.6 * dem + 0.5 * p.lives_alone
    if structure == "realistic":
        alone = dem & p.lives_alone & ~p.informal_carer
        logit_home = logit_home + REALISTIC_CARE["dementia_alone_no_carer"] * alone
    resident0 = (age >= 65) & (u[0] < 1 / (1 + np.exp(-logit_home)))
    logit_hc = -5.2 + 0.8 * a + 0.08 * d0 + 0.8 * dem + 0.6 * p.lives_alone
    home_care = (age >= 50) & ~resident0 & (u[1] < 1 / (1 + np.exp(-logit_hc)))
    hours = np.where(home_care, np.round(2 + rng.gamma(2.0, 4.0, p.n)), 0.0)
    logit_tc = -3.6 + 0.9 * a + 0.1 * d0 + 0.8 * p.lives_alone
    telecare = (age >= 60) & ~resident0 & (u[2] < 1 / (1 + np.exp(-logit_tc)))
    return Setup(
        base=base,
        diag_month=diag,
        deficit_order=order,
        deficit_month=dmonth,
        regime=regime,
        resident0=resident0,
        care_home_nursing=u[3] < 0.4,
        home_care_hours0=np.clip(hours, 0, 60),
        telecare0=telecare,
        structure=structure,
    )


def _diagnoses(p: People, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in CONDITION_NAMES:
        present = p.conditions[name]
        at_start = 0.6 if name == "dementia" else 0.78
        monthly = 0.02 if name == "dementia" else 0.03
        u = rng.random(p.n)
        later = np.floor(np.log(rng.random(p.n)) / np.log1p(-monthly)).astype(np.int64)
        month = np.where(u < at_start, -1, later)
        out[name] = np.where(present, month, NEVER)
    return out


def _deficits(rng: np.random.Generator, d0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = len(cat.GENERIC_DEFICITS)
    weights = np.array([cat.DEFICIT_WEIGHT.get(name, 1.0) for name in cat.GENERIC_DEFICITS])
    gumbel = np.log(weights)[None, :] - np.log(-np.log(rng.random((len(d0), g))))
    order = np.argsort(-gumbel, axis=1).astype(np.int16)
    rank = np.arange(1, g + 1, dtype=float)[None, :]
    ratio = rank / np.maximum(d0[:, None], 1e-9)
    months = np.ceil(12.0 / FRAILTY_GROWTH * np.log(np.maximum(ratio, 1e-12)))
    months = np.where(ratio <= 1.0, -1, np.minimum(months, NEVER)).astype(np.int64)
    return order, months


def _regime(
    p: People,
    rng: np.random.Generator,
    diag: dict[str, np.ndarray],
    order: np.ndarray,
    dmonth: np.ndarray,
    age: np.ndarray,
) -> np.ndarray:
    k = cat.catalogue()
    med_index = k.med_index
    regime = np.zeros((p.n, len(k.medicines)), dtype=bool)
    for cond, med, chance in cat.CONDITION_MEDICINES:
        on = (diag[cond] == -1) & (rng.random(p.n) < chance)
        regime[:, med_index[med]] |= on
    has = deficits_at_start(order, dmonth)
    for deficit, med, chance in cat.DEFICIT_MEDICINES:
        col = cat.GENERIC_DEFICITS.index(deficit)
        regime[:, med_index[med]] |= has[:, col] & (rng.random(p.n) < chance)
    young_f = p.female & (age >= 18) & (age < 45)
    regime[:, med_index["desogestrel"]] |= young_f & (rng.random(p.n) < 0.2)
    return regime


def deficits_at_start(order: np.ndarray, dmonth: np.ndarray) -> np.ndarray:
    """(n, G) bool: generic deficit present at the start, by deficit position."""
    has = np.zeros(order.shape, dtype=bool)
    rows = np.arange(order.shape[0])[:, None]
    has[rows, order] = dmonth == -1
    return has
