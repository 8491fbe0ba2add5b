"""Everyone in each outcome's cohort scored at a snapshot: the rows of the scores history.

`score_people` is the one per-partition function: rows of the snapshot in, each model's
cohort members scored, banded and explained (top reasons per audience) out. `carerisk
score-all` runs it on DuckDB/pandas (`score_snapshot`, in chunks) or on Spark
(models.score_spark, inside mapInPandas); both then rank by the same SQL
(features.scores_history.ranked_sql) and features.scores_history stores the rows. People on
the objections list are left out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from features.fairness import FAIRNESS_GROUPS
from features.feature_list import FEATURES
from features.outcomes import Outcome
from features.scores_export import ExportKey, prune, write_export
from features.scores_history import (
    COLUMNS,
    RANKED,
    REASON_COLUMNS,
    Written,
    rank_scores,
)
from features.training_sets import descriptors
from models.bundle import ModelBundle, TopReasons, plain_value
from models.encoding import encode_array
from models.reasons import reason_fields

CHUNK_ROWS = 200_000  # people encoded and predicted at once: bounds memory at 600k
TOP_K = 5  # reasons kept per person and audience (the service's default)

# audience -> the features it may be shown (None: all). The roles' views (serving/roles.py):
# gp, analyst and admin see every reason; the fire service sees non-clinical ones only.
AUDIENCES: Mapping[str, frozenset[str] | None] = MappingProxyType(
    {
        "clinical": None,
        "non_clinical": frozenset(f.name for f in FEATURES if not f.clinical),
    }
)


@dataclass(frozen=True)
class ScoringModel:
    """What scoring a partition needs of a champion: plain data and the bundle, so that it
    travels as JSON text (`to_json`) to a Spark executor and is rebuilt there."""

    outcome: str
    cohort_column: str
    bundle: ModelBundle
    model_name: str
    version: str
    run_id: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "outcome": self.outcome,
                "cohort_column": self.cohort_column,
                "bundle": self.bundle.to_json(),
                "model_name": self.model_name,
                "version": self.version,
                "run_id": self.run_id,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ScoringModel:
        data = json.loads(text)
        return cls(
            outcome=data["outcome"],
            cohort_column=data["cohort_column"],
            bundle=ModelBundle.from_json(data["bundle"]),
            model_name=data["model_name"],
            version=data["version"],
            run_id=data["run_id"],
        )


@dataclass(frozen=True)
class Champion:
    """A registered model as it scores: the bundle and where it came from."""

    outcome: Outcome
    bundle: ModelBundle
    model_name: str
    version: str
    run_id: str

    def scoring(self) -> ScoringModel:
        return ScoringModel(
            self.outcome.name,
            self.outcome.cohort_column,
            self.bundle,
            self.model_name,
            self.version,
            self.run_id,
        )


def groups_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The fairness groups (features.fairness) of feature rows, as text."""
    return descriptors(frame)[list(FAIRNESS_GROUPS)].astype(str)


def score_snapshot(
    snapshot: pd.DataFrame,
    champions: Sequence[Champion],
    objections: Iterable[str] = (),
    chunk_rows: int = CHUNK_ROWS,
    top_k: int = TOP_K,
) -> pd.DataFrame:
    """One row per outcome and cohort member of the snapshot (COLUMNS of the scores history),
    on DuckDB/pandas: `score_people` a chunk at a time, then ranked.

    `snapshot` is features.snapshot.read_snapshot_people's frame: the registry's features,
    index_date, each outcome's cohort flag, district, practice_code and gp_system.
    """
    blocked = frozenset(objections)
    models = [c.scoring() for c in champions]
    parts = [
        score_people(snapshot.iloc[i : i + chunk_rows], models, blocked, top_k)
        for i in range(0, len(snapshot), chunk_rows)
    ]
    unranked = pd.concat(parts, ignore_index=True) if parts else empty_scores(RANKED)
    return finish(rank_scores(unranked))


def write_scores_files(
    store_path: Path,
    champions: Sequence[Champion],
    target: Path,
    objections: Iterable[str] = (),
    chunk_rows: int = CHUNK_ROWS,
    top_k: int = TOP_K,
) -> Path | None:
    """score_snapshot's rows written as Parquet into the folder `target` instead of held in
    memory: the snapshot's people read from a Parquet copy `chunk_rows` at a time, each chunk
    scored by `score_people` and written, then ranked by DuckDB (the same SQL as every engine).
    Memory holds one chunk, not the population. Returns `target`, or None when nobody was
    scored."""
    import duckdb
    import pyarrow.parquet as pq

    from features.scores_history import ranked_sql
    from features.snapshot import copy_snapshot_people

    models = [c.scoring() for c in champions]
    blocked = frozenset(objections)
    unranked = target / "unranked"
    unranked.mkdir(parents=True, exist_ok=True)
    people = target / "people.parquet"
    copy_snapshot_people(store_path, people)
    _check_one_date(people)
    parts = 0
    for batch in pq.ParquetFile(people).iter_batches(batch_size=chunk_rows):
        scored = score_people(batch.to_pandas(), models, blocked, top_k)
        if len(scored):
            scored.to_parquet(unranked / f"part-{parts:05d}.parquet", index=False)
            parts += 1
    people.unlink()
    if not parts:
        return None
    ranked = target / "ranked"
    ranked.mkdir()
    with duckdb.connect() as con:
        parts_glob = _quoted(f"{unranked}/*.parquet")
        con.execute(f"CREATE VIEW unranked AS SELECT * FROM read_parquet({parts_glob})")
        out = _quoted(str(ranked / "scores.parquet"))
        con.execute(f"COPY ({ranked_sql('unranked')}) TO {out} (FORMAT parquet)")
    for part in unranked.iterdir():
        part.unlink()
    unranked.rmdir()
    return ranked


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_one_date(people: Path) -> None:
    import duckdb

    with duckdb.connect() as con:
        found = con.execute(
            f"SELECT count(DISTINCT index_date) FROM read_parquet({_quoted(str(people))})"
        ).fetchall()
    if int(found[0][0]) > 1:
        raise ValueError(f"the snapshot holds {found[0][0]} index dates; it must hold one")


def empty_scores(columns: Iterable[str] = COLUMNS) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def finish(scores: pd.DataFrame) -> pd.DataFrame:
    """Ranked scores as both engines return them: COLUMNS, dates as dates, ranks as int64,
    sorted by outcome and person."""
    out = scores[list(COLUMNS)].copy()
    out["snapshot_date"] = [pd.Timestamp(d).date() for d in out["snapshot_date"]]
    for column in ("rank_practice", "rank_district", "rank_county"):
        out[column] = out[column].astype("int64")
    out = out.sort_values(["outcome", "person_id"], kind="stable")
    return out.reset_index(drop=True)


def score_people(
    people: pd.DataFrame,
    models: Sequence[ScoringModel],
    objections: Collection[str] = frozenset(),
    top_k: int = TOP_K,
) -> pd.DataFrame:
    """The per-partition function of both engines: for each model, its cohort members among
    `people` (snapshot rows with gp_system; objectors left out) scored, banded and explained.
    The RANKED columns: everything but the ranks, which need the whole snapshot."""
    blocked = objections if isinstance(objections, (set, frozenset)) else set(objections)
    parts = [_score_model(people, m, blocked, top_k) for m in models]
    if not parts:
        return empty_scores(RANKED)
    return pd.concat(parts, ignore_index=True)[list(RANKED)]


def cohort_members(
    snapshot: pd.DataFrame, outcome: Outcome, objections: Iterable[str] = ()
) -> pd.DataFrame:
    """The snapshot's rows in the outcome's cohort, objectors left out, in snapshot order."""
    return _members(snapshot, outcome.cohort_column, set(objections))


def _members(snapshot: pd.DataFrame, flag: str, blocked: Collection[str]) -> pd.DataFrame:
    if flag not in snapshot.columns:
        raise ValueError(
            f"the snapshot has no {flag} column; run `carerisk features` to rebuild it"
        )
    keep = snapshot[flag].fillna(False).astype(bool) & ~snapshot["person_id"].isin(blocked)
    members = snapshot.loc[keep.to_numpy()].reset_index(drop=True)
    days = pd.to_datetime(members["index_date"]).dt.date.unique()
    if len(days) > 1:
        raise ValueError(f"the snapshot holds {len(days)} index dates; it must hold one")
    return members


def predict(bundle: ModelBundle, frame: pd.DataFrame, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Calibrated probabilities, `chunk_rows` people at a time."""
    parts = [
        bundle.predict(frame.iloc[i : i + chunk_rows]) for i in range(0, len(frame), chunk_rows)
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def _score_model(
    people: pd.DataFrame, model: ScoringModel, blocked: Collection[str], top_k: int
) -> pd.DataFrame:
    members = _members(people, model.cohort_column, blocked)
    bundle = model.bundle
    p, tops = bundle.score_arrays(encode_array(members, bundle.features), top_k, AUDIENCES)
    rows = pd.DataFrame(
        {
            "snapshot_date": pd.to_datetime(members["index_date"]).dt.date,
            "outcome": model.outcome,
            "person_id": members["person_id"].astype(str),
            "probability": p,
            "band": bundle.bands.band(p),
            "model_name": model.model_name,
            "model_version": model.version,
            "run_id": model.run_id,
            "practice_code": members["practice_code"].astype(str),
        }
    )
    for audience, column in REASON_COLUMNS.items():
        rows[column] = reasons_json(bundle, members, tops[audience])
    return pd.concat([rows, groups_of(members)], axis=1)


def reasons_json(bundle: ModelBundle, members: pd.DataFrame, top: TopReasons) -> list[str]:
    """Each person's top reasons as compact JSON text: [[feature, value, contribution], ...],
    largest |SHAP| first; `stored_reasons` turns one back into the reasons served."""
    names = bundle.feature_names
    used = np.unique(top.picks)
    values = {int(j): members[names[j]].to_numpy(dtype=object) for j in used.tolist()}
    return [
        json.dumps(
            [
                [names[j], plain_value(values[j][i]), c]
                for j, c in zip(picks, contributions, strict=True)
            ],
            separators=(",", ":"),
        )
        for i, (picks, contributions) in enumerate(
            zip(top.picks.tolist(), top.contributions.tolist(), strict=True)
        )
    ]


def stored_reasons(bundle: ModelBundle, text: str) -> list[dict[str, Any]]:
    """A stored reasons column's value as the reasons served (models.reasons field order)."""
    by_name = {f.name: f for f in bundle.features}
    out = []
    for name, value, contribution in json.loads(text):
        feature = by_name.get(name)
        if feature is None:
            raise ValueError(f"stored reason names {name!r}, not a feature of the model")
        label = feature.describe("unknown" if value is None else value)
        out.append(reason_fields(feature, label, value, float(contribution)))
    return out


def export_key(champion: Champion, fingerprint: str) -> ExportKey:
    """The key of a champion's scores export at the snapshot of this fingerprint."""
    return ExportKey(
        champion.outcome.name, champion.model_name, champion.version, champion.run_id, fingerprint
    )


def export_scores(
    folder: Path,
    scores: pd.DataFrame | Path,
    people: pd.DataFrame,
    champions: Sequence[Champion],
    fingerprint: str,
) -> list[Path]:
    """Write each champion's scores export (features.scores_export) from the scores of
    `score_snapshot` (or the Parquet files of the Spark engine's) and the snapshot's places
    and cohort flags (features.snapshot.read_places_and_cohorts); returns the files written."""
    written = []
    for champion in champions:
        flag = champion.outcome.cohort_column
        missing = [c for c in (flag, "district", "practice_code") if c not in people.columns]
        if missing:
            raise ValueError(
                f"the snapshot has no {', '.join(missing)}: it was written before these were "
                "kept, or without this outcome registered; re-run `carerisk features`"
            )
        members = people[["person_id", "district", "practice_code"]].copy()
        members["in_cohort"] = people[flag].fillna(False).astype(bool).to_numpy()
        own = (
            scores.loc[scores["outcome"] == champion.outcome.name]
            if isinstance(scores, pd.DataFrame)
            else scores
        )
        key = export_key(champion, fingerprint)
        written.append(write_export(folder, key, members, own))
        prune(folder, champion.outcome.name)
    return written


def store_and_export(
    store_path: Path,
    folder: Path,
    scores: pd.DataFrame | Path,
    champions: Sequence[Champion],
    objections: Collection[str],
    fingerprint: str,
) -> list[Written]:
    """Store `scores` (of the snapshot whose fingerprint was `fingerprint` when it was read) in
    the scores history and write each champion's export: what `carerisk score-all` and
    `carerisk refresh` both do once the snapshot is scored. `scores` is a frame, or a folder
    of Parquet files (the Spark engine's), which DuckDB reads straight into both."""
    from features.scores_history import write_scores, write_scores_parquet
    from features.snapshot import read_places_and_cohorts, snapshot_fingerprint

    people = read_places_and_cohorts(store_path, [c.outcome for c in champions])
    if snapshot_fingerprint(store_path) != fingerprint:
        raise ValueError(
            f"the snapshot in {store_path} changed while it was scored; run `carerisk "
            "score-all` again once `carerisk features` has finished"
        )
    if isinstance(scores, pd.DataFrame):
        written = write_scores(store_path, scores, objections)
    else:
        written = write_scores_parquet(store_path, scores, objections)
    export_scores(folder, scores, people, champions, fingerprint)
    return written


def score_and_export(
    store_path: Path, folder: Path, champions: Sequence[Champion], objections: Iterable[str] = ()
) -> list[Path]:
    """Score the stored snapshot with these champions (as `carerisk score-all` does on DuckDB)
    and write their exports only, not the store's history (the service, when it finds no
    export for its champions, reads the store and never writes it)."""
    from features.snapshot import read_snapshot_people, snapshot_fingerprint

    fingerprint = snapshot_fingerprint(store_path)
    snapshot = read_snapshot_people(store_path)
    scores = score_snapshot(snapshot, champions, objections)
    if snapshot_fingerprint(store_path) != fingerprint:
        raise ValueError(
            f"the snapshot in {store_path} changed while it was scored; try again once "
            "`carerisk features` has finished"
        )
    return export_scores(folder, scores, snapshot, champions, fingerprint)
