"""The county's geography and its people: static traits and latent conditions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic.config import CountyConfig

DISTRICTS: tuple[str, ...] = (
    "Bromsgrove",
    "Malvern Hills",
    "Redditch",
    "Worcester",
    "Wychavon",
    "Wyre Forest",
)
DISTRICT_WEIGHTS = np.array([99, 79, 87, 103, 132, 102], dtype=float)
# mean IMD decile of each district's small areas (1 = most deprived)
DISTRICT_IMD_MEAN = np.array([7.0, 6.8, 4.6, 5.0, 6.5, 4.8])
GP_SYSTEMS: tuple[str, ...] = ("EMIS", "SystmOne", "Vision")
GP_SYSTEM_WEIGHTS = np.array([0.55, 0.40, 0.05])
ETHNICITIES: tuple[str, ...] = ("white", "mixed", "asian", "black", "other")
ETHNICITY_WEIGHTS = np.array([0.90, 0.025, 0.045, 0.012, 0.018])
ETHNICITY_UNRECORDED = 0.07

# latent conditions: (logit of prevalence at 75, change per decade, loading on z_frail)
CONDITION_PREVALENCE: dict[str, tuple[float, float, float]] = {
    "dementia": (-3.35, 1.25, 0.35),
    "parkinsons": (-4.6, 0.5, 0.2),
    "stroke": (-2.9, 0.5, 0.3),
    "multiple_sclerosis": (-6.0, -0.2, 0.1),
    "urinary_incontinence": (-2.4, 0.6, 0.3),
    "visual_impairment": (-3.3, 0.8, 0.2),
    "depression": (-2.2, -0.1, 0.3),
    "heart_failure": (-3.3, 0.8, 0.35),
    "copd": (-3.0, 0.4, 0.3),
    "ckd": (-2.4, 0.8, 0.3),
    "diabetes": (-1.9, 0.2, 0.25),
    "liver_disease": (-5.0, 0.1, 0.2),
    "cancer": (-2.8, 0.5, 0.2),
    "osteoporosis": (-2.9, 0.8, 0.2),
}
# conditions that are refinements of another: (parent, share of parent)
CONDITION_SUBSETS: dict[str, tuple[str, float]] = {
    "complicated_diabetes": ("diabetes", 0.25),
    "hemiplegia": ("stroke", 0.2),
}
CONDITION_NAMES: tuple[str, ...] = (*CONDITION_PREVALENCE, *CONDITION_SUBSETS)
# Fall-proneness is half gait and balance impairment, which GP codes, falls assessments and
# social care equipment reveal in part, and half what no record shows (behaviour, footwear,
# hazards outside the home): a stated assumption, in variance shares.
GAIT_SHARE = 0.5
GAIT_LOADING = float(np.sqrt(GAIT_SHARE))
UNSEEN_LOADING = float(np.sqrt(1.0 - GAIT_SHARE))


def rng_for(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    """An independent, reproducible random stream for one purpose and one chunk of people."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, chunk])))


@dataclass(frozen=True)
class Geography:
    lsoa_codes: list[str]
    lsoa_district: np.ndarray  # index into DISTRICTS
    lsoa_imd: np.ndarray  # 1..10
    practice_codes: list[str]
    practice_district: np.ndarray
    practice_system: np.ndarray  # index into GP_SYSTEMS
    practice_underrecords: np.ndarray  # bool


def build_geography(config: CountyConfig) -> Geography:
    rng = rng_for(config.seed, 1)
    n_lsoa = max(36, config.people // config.people_per_lsoa)
    n_prac = max(8, round(config.people / config.people_per_practice))
    weights = DISTRICT_WEIGHTS / DISTRICT_WEIGHTS.sum()
    lsoa_district = np.sort(rng.choice(len(DISTRICTS), size=n_lsoa, p=weights))
    lsoa_district[: len(DISTRICTS)] = np.arange(len(DISTRICTS))  # every district has an area
    imd = np.rint(DISTRICT_IMD_MEAN[lsoa_district] + rng.normal(0, 2.4, n_lsoa))
    prac_district = np.concatenate(
        [np.arange(len(DISTRICTS)), rng.choice(len(DISTRICTS), size=n_prac - 6, p=weights)]
    )
    n_under = round(config.underrecording_practice_share * n_prac)
    under = np.zeros(n_prac, dtype=bool)
    under[rng.permutation(n_prac)[:n_under]] = True
    systems = rng.choice(len(GP_SYSTEMS), size=n_prac, p=GP_SYSTEM_WEIGHTS)
    systems[rng.permutation(n_prac)[: len(GP_SYSTEMS)]] = np.arange(len(GP_SYSTEMS))
    base = int(rng.integers(100, 600))
    return Geography(
        lsoa_codes=[f"E01{32000 + base + i:06d}" for i in range(n_lsoa)],
        lsoa_district=lsoa_district,
        lsoa_imd=np.clip(imd, 1, 10).astype(np.int64),
        practice_codes=[f"M{81001 + 3 * i:05d}" for i in range(n_prac)],
        practice_district=prac_district,
        practice_system=systems,
        practice_underrecords=under,
    )


MAX_AGE = 109  # oldest age at the start of the extract
# Above 65, people at the start follow a Gompertz survival curve, hazard A * exp(B * (age - 65)),
# scaled so that about 23% of people are 65+. A and B were fitted so that, two to three years on
# (the simulated deaths and birthdays included), the shares of all people aged 85+, 90+ and 100+
# match Census 2021 for England and Wales: about 2.4%, 0.9% and 0.02% (clinical.md). Measured
# among the living at 2024-04-01 in two 200,000-person counties: 2.3%, 0.78-0.80% and
# 0.019-0.028% (40-55 people), and 23.2% aged 65+.
GOMPERTZ_A = 0.0428
GOMPERTZ_B = 0.0507
OLD_SCALE = 1.45


def age_weights() -> np.ndarray:
    """Relative numbers of people by single year of age 0..MAX_AGE (about 23% aged 65+)."""
    ages = np.arange(MAX_AGE + 1, dtype=float)
    w = np.where(ages < 50, 1.0, 1.08)
    old = ages >= 65
    k = ages[old] - 65 + 0.5
    w[old] = OLD_SCALE * np.exp(-(GOMPERTZ_A / GOMPERTZ_B) * np.expm1(GOMPERTZ_B * k))
    return w / w.sum()


@dataclass
class People:
    """Static traits of one chunk of people (arrays of equal length)."""

    index: np.ndarray  # global person number
    birth_month: np.ndarray  # absolute month number (year * 12 + month - 1)
    female: np.ndarray
    ethnicity: np.ndarray  # index into ETHNICITIES
    ethnicity_recorded: np.ndarray
    lsoa: np.ndarray
    district: np.ndarray
    imd: np.ndarray
    practice: np.ndarray
    underrecorded: np.ndarray  # practice under-records frailty codes
    lives_alone: np.ndarray
    lives_alone_recorded: np.ndarray
    informal_carer: np.ndarray
    informal_carer_recorded: np.ndarray
    smoker: np.ndarray
    ex_smoker: np.ndarray
    heavy_drinker: np.ndarray
    bmi: np.ndarray
    z_gait: np.ndarray  # gait and balance impairment: the part of fall-proneness records show
    z_unseen: np.ndarray  # the rest of fall-proneness: no record ever shows it
    z_frail: np.ndarray  # latent frailty
    home_hazard: np.ndarray  # trip hazards at home (seen by fire visits)
    conditions: dict[str, np.ndarray]  # latent, present for the whole extract

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def z_fall(self) -> np.ndarray:
        """Latent fall-proneness, N(0, 1): a recordable and a never-recorded part."""
        return GAIT_LOADING * self.z_gait + UNSEEN_LOADING * self.z_unseen

    def age_years(self, abs_month: int | np.ndarray) -> np.ndarray:
        return (abs_month - self.birth_month) / 12.0


def make_people(
    config: CountyConfig, geo: Geography, first: int, count: int, start_abs: int
) -> People:
    rng = rng_for(config.seed, 2, first // config.chunk_people)
    age0 = rng.choice(MAX_AGE + 1, size=count, p=age_weights())
    birth_month = start_abs - age0 * 12 - rng.integers(0, 12, count)
    age = (start_abs - birth_month) / 12.0
    adult = age >= 18
    old = age >= 65
    female = rng.random(count) < np.where(age >= 80, 0.6, 0.505)
    eth = rng.choice(len(ETHNICITIES), size=count, p=ETHNICITY_WEIGHTS)
    # older people are more often white in this county
    eth = np.where(old & (rng.random(count) < 0.6), 0, eth)
    lsoa = rng.integers(0, len(geo.lsoa_codes), count)
    district = geo.lsoa_district[lsoa]
    practice = _choose_practice(rng, geo, district)
    alone_p = np.select([age < 18, age < 30, age < 65, age < 80], [0.0, 0.12, 0.14, 0.27], 0.5)
    lives_alone = rng.random(count) < alone_p
    carer_p = np.where(lives_alone, 0.3, 0.6)
    smoke_p = np.where(adult, np.where(old, 0.09, 0.14), 0.0)
    u = rng.random(count)
    smoker = u < smoke_p
    ex_smoker = adult & ~smoker & (u < smoke_p + np.where(old, 0.4, 0.2))
    bmi = np.where(adult, rng.normal(27.3, 4.6, count), rng.normal(19, 3, count))
    z_frail = rng.standard_normal(count)
    people = People(
        index=np.arange(first, first + count, dtype=np.int64),
        birth_month=birth_month.astype(np.int64),
        female=female,
        ethnicity=eth,
        ethnicity_recorded=rng.random(count) >= ETHNICITY_UNRECORDED,
        lsoa=lsoa,
        district=district,
        imd=geo.lsoa_imd[lsoa],
        practice=practice,
        underrecorded=geo.practice_underrecords[practice],
        lives_alone=lives_alone,
        lives_alone_recorded=rng.random(count) >= np.where(adult, 0.04, 0.5),
        informal_carer=adult & (rng.random(count) < carer_p),
        informal_carer_recorded=rng.random(count) >= 0.15,
        smoker=smoker,
        ex_smoker=ex_smoker,
        heavy_drinker=adult & (rng.random(count) < np.where(smoker, 0.12, 0.04)),
        bmi=np.clip(bmi, 13, 65),
        z_gait=rng.standard_normal(count),
        z_unseen=rng.standard_normal(count),
        z_frail=z_frail,
        home_hazard=rng.random(count) < np.where(old, 0.3, 0.15),
        conditions={},
    )
    people.conditions.update(_latent_conditions(rng, people, age))
    return people


def _choose_practice(rng: np.random.Generator, geo: Geography, district: np.ndarray) -> np.ndarray:
    n_prac = len(geo.practice_codes)
    # pick a practice in the person's district (or anywhere, for 8%)
    score = rng.random((len(district), n_prac)) + 2.0 * (
        geo.practice_district[None, :] == district[:, None]
    )
    anywhere = rng.random(len(district)) < 0.08
    score[anywhere] = rng.random((int(anywhere.sum()), n_prac))
    return np.argmax(score, axis=1)


def _latent_conditions(
    rng: np.random.Generator, p: People, age: np.ndarray
) -> dict[str, np.ndarray]:
    adult = age >= 18
    decades = (age - 75.0) / 10.0
    out: dict[str, np.ndarray] = {}
    for name, (a, b, load) in CONDITION_PREVALENCE.items():
        logit = a + b * decades + load * p.z_frail
        if name == "copd":
            logit = logit + 1.1 * p.smoker + 0.6 * p.ex_smoker
        elif name == "diabetes":
            logit = logit + 0.09 * (p.bmi - 27.0)
        elif name == "liver_disease":
            logit = logit + 1.6 * p.heavy_drinker
        elif name in ("osteoporosis", "urinary_incontinence"):
            logit = logit + 0.9 * p.female
        elif name == "depression":
            logit = logit + 0.4 * p.female + 0.3 * (p.imd <= 3)
        out[name] = adult & (rng.random(len(age)) < 1.0 / (1.0 + np.exp(-logit)))
    for name, (parent, share) in CONDITION_SUBSETS.items():
        out[name] = out[parent] & (rng.random(len(age)) < share)
    return out
