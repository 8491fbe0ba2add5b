"""Training sets: features at each index date, the cohort, labels and fairness descriptors.

Each row uses only records dated before its own index date; its label looks forward over
the horizon from that date. People who object to the use of their records are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd

from features.cohorts import cohort
from features.coverage import read_store_coverage
from features.definitions import Sources, feature_table
from features.engines import Engine, normalise, open_sources
from features.extent import data_start as store_start
from features.fairness import FAIRNESS_GROUPS
from features.feature_list import FEATURES
from features.labels import LabelSettings, add_months, labels
from features.outcomes import Outcome

LABEL_COLUMNS: tuple[str, ...] = ("label", "died_before_event", "follow_up_days")
WEIGHT = "sample_weight"  # only in a sampled training set (see NegativeSampling)
LOOKBACK_MONTHS = 12  # the first index date leaves a year of records behind it
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("0-17", 0, 17),
    ("18-44", 18, 44),
    ("45-64", 45, 64),
    ("65-74", 65, 74),
    ("75-84", 75, 84),
    ("85+", 85, 200),
)


def index_dates(start: date, end: date, follow_up_months: int, step_months: int = 3) -> list[date]:
    """First days of quarters from start + 12 months, while D + follow-up <= end + 1 day.

    `start` and `end` are the first and last days of the data; the first index date leaves
    a year of lookback, the last leaves the outcome's whole horizon of follow-up.
    """
    if step_months < 1:
        raise ValueError("step_months must be at least 1")
    first = add_months(start, LOOKBACK_MONTHS)
    quarter_month = ((first.month - 1) // 3) * 3 + 1
    day = date(first.year, quarter_month, 1)
    if day < first:
        day = add_months(day, 3)
    out = []
    while add_months(day, follow_up_months) <= end + timedelta(days=1):
        out.append(day)
        day = add_months(day, step_months)
    return out


def age_band(age: pd.Series) -> pd.Series:
    out = pd.Series(None, index=age.index, dtype="object")
    for name, low, high in AGE_BANDS:
        out[(age >= low) & (age <= high)] = name
    return out.astype("str")


def completeness_band(frame: pd.DataFrame) -> pd.Series:
    """high / medium / low from GP contact, ethnicity and BMI recorded and two years of data."""
    score = (
        frame["has_gp_event_730d"].fillna(0)
        + frame["ethnicity_recorded"].fillna(0)
        + frame["bmi_recorded"].fillna(0)
        + (frame["lookback_days"] >= 730).astype("float64")
    )
    bands = np.select([score >= 4, score >= 2], ["high", "medium"], default="low")
    return pd.Series(bands, index=frame.index, dtype="str")


def imd_quintile(decile: pd.Series) -> pd.Series:
    """Deprivation quintile from the decile; nullable (Int64) when a decile is missing."""
    quintile = (decile + 1) // 2
    return quintile.astype("int64") if quintile.notna().all() else quintile.astype("Int64")


def descriptors(frame: pd.DataFrame) -> pd.DataFrame:
    """The fairness groups (features.fairness) from the feature columns and gp_system."""
    found = {
        "age_band": age_band(frame["age_years"]),
        "sex": np.where(frame["female"] == 1, "F", "M"),
        "ethnicity": frame["ethnic_group"].fillna("not recorded").astype("str"),
        "imd_quintile": imd_quintile(frame["imd_decile"]),
        "district": frame["district"].astype("str"),
        "gp_system": frame["gp_system"].astype("str"),
        "completeness": completeness_band(frame),
    }
    return pd.DataFrame({name: found[name] for name in FAIRNESS_GROUPS}, index=frame.index)


@dataclass(frozen=True)
class NegativeSampling:
    """Keep every positive person-date and a fraction of the negative ones, each kept negative
    weighted 1/fraction, so weighted sums over the sample estimate sums over everyone.

    A negative row is kept when a uniform number drawn from a SipHash of "person_id|index date"
    (keyed by `seed`) is below `fraction`: the same person-date always gets the same draw,
    whoever else is in the store. People for whom `whole(person_ids)` is true keep every row
    (weight 1): training keeps its calibration people whole. The latest index date of a
    training set (the validation date) is never sampled."""

    fraction: float
    seed: int
    whole: Callable[[pd.Series], np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"the negative sampling fraction must be in (0, 1]: {self.fraction}")

    def weights(self, people: pd.DataFrame, day: date) -> pd.Series:
        """The weight of each row of `people` (person_id, label) kept at `day`; rows left out
        get no entry (NaN)."""
        ids = people["person_id"].astype(str)
        drawn = person_date_uniform(ids, day, self.seed) < self.fraction
        whole = np.asarray(self.whole(ids), dtype=bool) if self.whole else np.zeros(len(ids), bool)
        positive = people["label"].to_numpy() == 1
        weight = np.where(positive | whole, 1.0, np.where(drawn, 1.0 / self.fraction, np.nan))
        return pd.Series(weight, index=people.index, name=WEIGHT)


def person_date_uniform(person_ids: pd.Series, day: date, seed: int) -> np.ndarray:
    """A number in [0, 1) per person at `day` from pandas' SipHash of "person_id|day" keyed by
    `seed` (the same scheme as training/fit.py people_hash_uniform)."""
    keys = person_ids.astype(str) + f"|{day.isoformat()}"
    key = f"{seed % 10**16:016d}"
    hashed = pd.util.hash_pandas_object(keys, index=False, hash_key=key).to_numpy()
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def _kept_rows(members: Any, outcomes: Any, day: date, sampling: NegativeSampling) -> Any:
    """The cohort's kept person-dates at `day` with their weights, as a table for the engine:
    only the people and labels leave the engine, never the features."""
    people = (
        members.join(outcomes, "person_id").select("person_id", "label").to_pyarrow().to_pandas()
    )
    weight = sampling.weights(people, day)
    kept = pd.DataFrame({"person_id": people["person_id"].astype(str), WEIGHT: weight}).dropna(
        subset=[WEIGHT]
    )
    return ibis.memtable(kept.reset_index(drop=True))


def _one_date(
    src: Sources,
    outcome: Outcome,
    day: date,
    data_start: date,
    settings: LabelSettings,
    sampling: NegativeSampling | None = None,
    missing: Sequence[str] = (),
) -> pd.DataFrame:
    feats = feature_table(src, day, data_start, settings.codes, missing)
    members = cohort(src, outcome, day)
    outcomes = labels(src, outcome, day, settings)
    systems = src["person"].select("person_id", "gp_system", "district")
    if sampling is None:
        rows = feats.semi_join(members, "person_id")
    else:
        rows = feats.join(_kept_rows(members, outcomes, day, sampling), "person_id")
    rows = rows.join(outcomes, "person_id").join(systems, "person_id")
    table = rows.order_by("person_id").to_pyarrow()
    frame = normalise(table)
    kept = [WEIGHT] if sampling is not None else []
    raw = table.select(["person_id", *LABEL_COLUMNS, *kept, "gp_system", "district"]).to_pandas()
    if not np.array_equal(raw["person_id"].astype(str).to_numpy(), frame["person_id"].to_numpy()):
        raise RuntimeError(f"the {day} training rows came back out of person order")
    for col in LABEL_COLUMNS:
        frame[col] = raw[col].astype("int64")
    if sampling is not None:
        frame[WEIGHT] = raw[WEIGHT].astype("float64")
    frame["gp_system"] = raw["gp_system"].astype("str")
    frame["district"] = raw["district"].astype("str")
    frame.insert(1, "index_date", pd.Timestamp(day))
    desc = descriptors(frame)
    return pd.concat([frame.drop(columns=["gp_system", "district"]), desc], axis=1)


def build_training_set(
    con: Any,
    outcome: Outcome,
    index_dates: Iterable[date],
    engine: Engine = "duckdb",
    *,
    objections: Iterable[str] = (),
    settings: LabelSettings | None = None,
    data_start: date | None = None,
    spark: Any | None = None,
    sampling: NegativeSampling | None = None,
) -> pd.DataFrame:
    """One row per cohort member per index date: person_id, index_date, every registry
    feature, label, died_before_event, follow_up_days and the fairness descriptors.

    `con` is the store path (or a mapping of contract table name -> Ibis table, already open).
    People in `objections` are left out. With `sampling`, the dates before the latest keep
    every positive row and a weighted sample of the negative ones, chosen in the engine's
    query; every row then has a `sample_weight` (1 at the latest date).
    """
    dates = sorted(set(index_dates))
    if not dates:
        raise ValueError("build_training_set needs at least one index date")
    settings = settings or LabelSettings()
    if isinstance(con, str | Path):
        start = data_start or store_start(Path(con)) or dates[0]
        missing = tuple(read_store_coverage(Path(con)).missing_features(FEATURES))
        with open_sources(Path(con), engine, spark) as src:
            frames = [
                _date_rows(src, outcome, d, dates, start, settings, sampling, missing)
                for d in dates
            ]
    else:
        start = data_start or dates[0] - timedelta(days=730)
        frames = [_date_rows(con, outcome, d, dates, start, settings, sampling) for d in dates]
    out = pd.concat(frames, ignore_index=True)
    blocked = set(objections)
    if blocked:
        out = out[~out["person_id"].isin(blocked)].reset_index(drop=True)
    return out


def _date_rows(
    src: Sources,
    outcome: Outcome,
    day: date,
    dates: Sequence[date],
    start: date,
    settings: LabelSettings,
    sampling: NegativeSampling | None,
    missing: Sequence[str] = (),
) -> pd.DataFrame:
    """One date's rows: sampled before the latest date, whole (weight 1) at it; `missing`
    features NULL (features.coverage)."""
    if sampling is None:
        return _one_date(src, outcome, day, start, settings, missing=missing)
    if day < max(dates):
        return _one_date(src, outcome, day, start, settings, sampling, missing)
    frame = _one_date(src, outcome, day, start, settings, missing=missing)
    frame.insert(list(frame.columns).index("follow_up_days") + 1, WEIGHT, 1.0)
    return frame


def sample_sizes(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per index date: rows kept, positive rows, and the rows they stand for (the sum of the
    weights); without sampling, every row stands for itself."""
    weight = frame[WEIGHT] if WEIGHT in frame else pd.Series(1.0, index=frame.index)
    dates = pd.to_datetime(frame["index_date"]).dt.date.astype(str)
    grouped = pd.DataFrame({"date": dates, "label": frame["label"], "w": weight}).groupby("date")
    return {
        str(day): {
            "rows": int(len(part)),
            "positives": int(part["label"].sum()),
            "represented": round(float(part["w"].sum()), 1),
        }
        for day, part in grouped
    }


def sample_totals(sizes: dict[str, dict[str, float]]) -> dict[str, float]:
    """sample_sizes summed over the index dates: rows, positives and rows represented."""
    return {
        key: sum(float(size[key]) for size in sizes.values())
        for key in ("rows", "positives", "represented")
    }


def split_temporal(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): validation is the latest index date, train the earlier ones."""
    if frame.empty:
        raise ValueError("split_temporal needs a non-empty training set")
    latest = frame["index_date"].max()
    if (frame["index_date"] == latest).all():
        raise ValueError("split_temporal needs at least two index dates")
    train = frame[frame["index_date"] < latest].reset_index(drop=True)
    validation = frame[frame["index_date"] == latest].reset_index(drop=True)
    return train, validation


def feature_columns(frame: pd.DataFrame) -> Sequence[str]:
    """The registry feature columns of a training set, in registry order."""
    skip = {"person_id", "index_date", *LABEL_COLUMNS, WEIGHT, *FAIRNESS_GROUPS}
    return [c for c in frame.columns if c not in skip]
