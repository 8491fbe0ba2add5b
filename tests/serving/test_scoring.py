"""The Scorer's stored snapshot scores (the export `carerisk score-all` writes): the same answers
as scoring the rows afresh."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.home import Home
from features.outcomes import FALLS
from models.score_all import export_scores
from serving.objection_list import ObjectionList
from serving.score_results import ScoreResponse, ScoreResult
from serving.scores_file import champion_of
from serving.scoring import (
    NotScored,
    ObjectedPeople,
    OutsideCohort,
    Scorer,
    ScoringError,
    ServedModel,
    UnknownPeople,
)
from tests.models.frames import make_frame, small_features, split_latest
from tests.serving.exports import export_frame, scorer_over
from training.config import TrainingConfig
from training.fit import fit


@pytest.fixture(scope="module")
def served() -> ServedModel:
    train, validation = split_latest(make_frame(people=3000, seed=3))
    trained = fit(train, validation, small_features(), FALLS, TrainingConfig.load())
    return ServedModel(FALLS, FALLS.model_name, "7", trained.bundle)


def snapshot(people: int = 400) -> pd.DataFrame:
    frame = make_frame(people=people, seed=11)
    frame = frame[frame["index_date"] == frame["index_date"].max()].reset_index(drop=True)
    frame["cohort_falls"] = np.arange(len(frame)) % 5 != 0  # every fifth person is outside
    frame["district"] = np.where(np.arange(len(frame)) % 2 == 0, "North", "South")
    frame["practice_code"] = "A00001"
    return frame.sort_values("person_id", ignore_index=True)


FOLDERS = itertools.count()


def make_scorer(served: ServedModel, tmp_path: Path, objectors: frozenset[str] = frozenset()
                ) -> Scorer:  # fmt: skip
    """Scored with nobody left out; `objectors` object after the scores were written."""
    objections = ObjectionList(Home(tmp_path).objections_path, objectors)
    folder = tmp_path / f"exports-{next(FOLDERS)}"
    return scorer_over(folder, snapshot(), {"falls": served}, objections, top_k=3)


def members(scorer: Scorer) -> list[str]:
    frame = snapshot()
    return frame.loc[frame["cohort_falls"], "person_id"].tolist()


@pytest.mark.parametrize("clinical", [True, False])
def test_snapshot_scores_equal_scoring_the_rows_afresh(
    served: ServedModel, tmp_path: Path, clinical: bool
) -> None:
    scorer = make_scorer(served, tmp_path)
    ids = members(scorer)[::7][:40]
    cached = scorer.score_people("falls", ids, clinical=clinical)
    rows = snapshot().set_index("person_id", drop=False).loc[ids]
    fresh = scorer.score_frame("falls", rows.reset_index(drop=True), ids, clinical=clinical)
    assert [r.person_ref for r in cached] == ids
    assert [r.model_dump() for r in cached] == [r.model_dump() for r in fresh]
    assert any(r.reasons for r in cached) or not clinical
    for result in cached:  # built without validation: it must still validate, and as JSON
        assert ScoreResult.model_validate(result.model_dump()) == result
        assert ScoreResult.model_validate_json(result.model_dump_json()) == result


def test_the_json_answer_is_the_typed_answer_serialised(
    served: ServedModel, tmp_path: Path
) -> None:
    scorer = make_scorer(served, tmp_path)
    ids = members(scorer)[:60]
    for _ in range(2):  # the second time every label comes from the cache
        body, bands = scorer.score_people_json("falls", ids)
        typed = ScoreResponse(results=scorer.score_people("falls", ids))
        assert json.loads(body) == json.loads(typed.model_dump_json())
        assert ScoreResponse.model_validate_json(body) == typed
        assert bands == [r.band for r in typed.results]
    values = [reason.value for r in typed.results for reason in r.reasons]
    assert len(set(map(type, values))) > 1  # numbers and words both went through the cache


def test_the_stored_scores_cover_the_cohort_only(served: ServedModel, tmp_path: Path) -> None:
    scorer = make_scorer(served, tmp_path)
    _, ranked = scorer.ranked("falls")
    assert sorted(r.person_ref for r in ranked) == sorted(members(scorer))
    frame = snapshot()
    outsider = frame.loc[~frame["cohort_falls"], "person_id"]
    with pytest.raises(OutsideCohort) as refused:
        scorer.score_people("falls", [members(scorer)[0], outsider.iloc[0]])
    assert refused.value.person_ids == [outsider.iloc[0]]


def test_people_who_objected_when_scored_and_withdrew_since_are_refused_by_name(
    served: ServedModel, tmp_path: Path
) -> None:
    first, second = members(make_scorer(served, tmp_path))[:2]
    objections = ObjectionList(Home(tmp_path).objections_path, frozenset())
    scorer = scorer_over(tmp_path / "withdrawn", snapshot(), {"falls": served}, objections,
                         scored_without={second})  # fmt: skip
    assert scorer.score_people("falls", [first])[0].person_ref == first
    with pytest.raises(NotScored, match="run `carerisk score-all`") as refused:
        scorer.score_people("falls", [first, second])
    assert refused.value.person_ids == [second]
    assert second not in {r.person_ref for r in scorer.ranked("falls")[1]}


def test_unknown_and_objecting_people_are_refused_by_name(
    served: ServedModel, tmp_path: Path
) -> None:
    first, second = members(make_scorer(served, tmp_path))[:2]
    scorer = make_scorer(served, tmp_path, frozenset({second}))
    with pytest.raises(UnknownPeople) as unknown:
        scorer.score_people("falls", [first, "Pnobody0000"])
    assert unknown.value.person_ids == ["Pnobody0000"]
    with pytest.raises(ObjectedPeople) as objected:
        scorer.score_people("falls", [first, second])
    assert objected.value.person_ids == [second]


def test_register_ranks_by_risk_without_objectors(served: ServedModel, tmp_path: Path) -> None:
    everyone = make_scorer(served, tmp_path)
    _, full = everyone.ranked("falls")
    objector = full[0].person_ref
    scorer = make_scorer(served, tmp_path, frozenset({objector}))
    places, results = scorer.ranked("falls", district="North", top=25)
    probabilities = [r.probability for r in results]
    assert probabilities == sorted(probabilities, reverse=True)
    assert [r.rank for r in results] == list(range(1, 26))
    assert objector not in {r.person_ref for r in results}
    assert set(places["district"]) == {"North"}
    assert places["person_id"].tolist() == [r.person_ref for r in results]
    by_id = {r.person_ref: r.probability for r in full}
    assert all(by_id[r.person_ref] == r.probability for r in results)


def test_missing_values_are_worded_once_as_unknown(served: ServedModel, tmp_path: Path) -> None:
    scorer = make_scorer(served, tmp_path)
    feature = served.bundle.features[0]
    stored = json.dumps([[feature.name, None, 0.5], [feature.name, None, -0.2]])
    worded = len(scorer._worded)
    first = scorer.reasons(served, stored) + scorer.reasons(served, stored)
    assert [r["value"] for r in first] == [None] * 4
    assert {r["label"] for r in first} == {feature.describe("unknown")}
    assert [r["direction"] for r in first] == ["raises", "lowers"] * 2
    assert len(scorer._worded) == worded + 1  # one entry, not one per reason


def test_a_snapshot_without_cohort_flags_is_refused(served: ServedModel, tmp_path: Path) -> None:
    frame = snapshot()
    scorer = make_scorer(served, tmp_path)
    champion = champion_of(scorer.models["falls"])
    for column in ("cohort_falls", "district"):
        with pytest.raises(ValueError, match=f"no {column}.*re-run `carerisk features`"):
            export_scores(tmp_path, frame.iloc[:0], frame.drop(columns=[column]), [champion], "x")


def test_only_served_outcomes_resolve(served: ServedModel, tmp_path: Path) -> None:
    scorer = make_scorer(served, tmp_path)
    assert scorer.resolve("Falls") == "falls"
    with pytest.raises(ScoringError, match="unknown outcome 'complex-dependency'; choose one of"):
        scorer.resolve("complex-dependency")  # a registered outcome, but not served here


def test_only_the_two_newest_exports_of_an_outcome_are_kept(
    served: ServedModel, tmp_path: Path
) -> None:
    folder = tmp_path / "kept"
    for n in range(3):
        export_frame(folder, snapshot(), {"falls": served}, fingerprint=f"2025-01-0{n + 1}/400/x")
    kept = sorted(p.name for p in folder.glob("scores-falls-*.duckdb"))
    assert [name.split("-")[2:5] for name in kept] == [["2025", "01", "02"], ["2025", "01", "03"]]
