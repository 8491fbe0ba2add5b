"""The service reads scores, it does not compute them: the same answers as before.

On a copy of the trained home (where `carerisk demo` ran `carerisk score-all`), a Scorer opens the
exports score-all wrote and answers, for every cohort member of both outcomes, exactly what the
champion bundle computes live on the same snapshot: probabilities within 1e-12, bands, reasons
and the API's JSON byte for byte; the county, a district's and a practice's registers rank the
same people in the same order. The Scorer holds nothing the size of the population and does not
keep the store open; a home without exports gets them written when the service starts.
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pydantic_core
import pytest

from codelists import CodeLists
from features.codes import Codes
from features.home import Home
from features.outcomes import PRODUCT
from features.scores_export import SCORE_COLUMNS, ExportKey, people_path, write_export
from features.snapshot import read_snapshot
from models import ModelBundle
from models.score_all import AUDIENCES
from serving.objection_list import ObjectionList
from serving.scores_file import ScoresFile, ScoresFileError, open_exports
from serving.scoring import WORDED_MAX, Scorer
from tests.live import copy_home
from tests.serving.exports import champions


@pytest.fixture(scope="module")
def home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_home(trained_home, tmp_path_factory.mktemp("exports") / "home")


def scorer_of(home: Path) -> Scorer:
    models = champions(home)
    layout = Home(home)
    objections = ObjectionList.load(layout.objections_path)
    return Scorer(models, open_exports(layout, models, objections.ids), objections)


@pytest.fixture(scope="module")
def scorer(home: Path) -> Scorer:
    exports = sorted(Home(home).scores_dir.iterdir())
    assert exports, "carerisk demo runs score-all, which writes the exports"
    opened = scorer_of(home)
    assert sorted(Home(home).scores_dir.iterdir()) == exports  # score-all's, none written now
    return opened


@pytest.fixture(scope="module")
def snapshot(home: Path) -> pd.DataFrame:
    return read_snapshot(Home(home).store_path)


def live(scorer: Scorer, snapshot: pd.DataFrame, outcome: str, clinical: bool) -> pd.DataFrame:
    """The cohort's probabilities, bands and reasons computed now by the champion's bundle."""
    served = scorer.models[outcome]
    members = snapshot.loc[snapshot[served.outcome.cohort_column].fillna(False).astype(bool)]
    members = members.reset_index(drop=True)
    allowed = None if clinical else AUDIENCES["non_clinical"]
    found = served.bundle.assess(members, top_k=scorer.top_k, allowed=allowed)
    return pd.DataFrame(
        {
            "person_id": members["person_id"],
            "district": members["district"],
            "practice_code": members["practice_code"],
            "probability": found.probabilities,
            "band": found.bands,
            "reasons": [[r.model_dump() for r in rs] for rs in found.reasons],
        }
    )


def records(scorer: Scorer, outcome: str, fresh: pd.DataFrame) -> list[dict[str, Any]]:
    """The API's records of `fresh` (live values), in ScoreResult's field order."""
    served = scorer.models[outcome]
    return [
        {
            "person_ref": row.person_id,
            "outcome": outcome,
            "model_name": served.name,
            "model_version": served.version,
            "index_date": scorer.index_date,
            "probability": float(row.probability),
            "band": row.band,
            "rank": None,
            "reasons": row.reasons,
            "notes": scorer.notes(),
        }
        for row in fresh.itertuples()
    ]


@pytest.mark.slow  # needs the trained home
@pytest.mark.parametrize("clinical", [True, False])
@pytest.mark.parametrize("outcome", PRODUCT.names())
def test_every_members_stored_score_is_the_bundles_own(
    scorer: Scorer, snapshot: pd.DataFrame, outcome: str, clinical: bool
) -> None:
    fresh = live(scorer, snapshot, outcome, clinical)
    ids = fresh["person_id"].tolist()
    assert len(ids) > 500
    served = scorer.score_people(outcome, ids, clinical=clinical)
    assert [r.person_ref for r in served] == ids
    gaps = np.abs(np.array([r.probability for r in served]) - fresh["probability"].to_numpy())
    assert gaps.max() <= 1e-12
    assert [r.band for r in served] == fresh["band"].tolist()
    assert [[x.model_dump() for x in r.reasons] for r in served] == fresh["reasons"].tolist()
    if clinical:  # the JSON answer, byte for byte
        body, bands = scorer.score_people_json(outcome, ids)
        assert body == pydantic_core.to_json({"results": records(scorer, outcome, fresh)})
        assert bands == fresh["band"].tolist()


def expected_order(fresh: pd.DataFrame) -> list[str]:
    """Highest risk first, ties by person_id (the rank rule of score-all and of the service
    before: a stable sort of the snapshot, which is in person_id order)."""
    ordered = fresh.sort_values(["probability", "person_id"], ascending=[False, True])
    return ordered["person_id"].tolist()


@pytest.mark.slow  # needs the trained home
@pytest.mark.parametrize("outcome", PRODUCT.names())
def test_registers_rank_the_same_people_in_the_same_order(
    scorer: Scorer, snapshot: pd.DataFrame, outcome: str
) -> None:
    fresh = live(scorer, snapshot, outcome, clinical=True)
    district = fresh["district"].value_counts().index[0]
    practice = fresh["practice_code"].value_counts().index[0]
    for where, top in (({}, None), ({}, 25), ({"district": district}, None),
                       ({"practice": practice}, None), ({"practice": practice}, 10)):  # fmt: skip
        chosen = fresh
        if "district" in where:
            chosen = fresh.loc[fresh["district"] == where["district"]]
        if "practice" in where:
            chosen = fresh.loc[fresh["practice_code"] == where["practice"]]
        want = expected_order(chosen)[:top]
        places, results = scorer.ranked(outcome, top=top, **where)
        assert [r.person_ref for r in results] == want, where
        assert places["person_id"].tolist() == want
        assert [r.rank for r in results] == list(range(1, len(want) + 1))
        by_id = chosen.set_index("person_id")
        assert [r.band for r in results] == by_id.loc[want, "band"].tolist()
        gaps = [abs(r.probability - by_id.loc[r.person_ref, "probability"]) for r in results]
        assert max(gaps) <= 1e-12
        assert [[x.model_dump() for x in r.reasons] for r in results] == by_id.loc[
            want, "reasons"
        ].tolist()


@pytest.mark.slow  # needs the trained home
def test_an_objection_after_scoring_leaves_the_register_ranked_one_to_n(
    home: Path, scorer: Scorer, snapshot: pd.DataFrame
) -> None:
    fresh = live(scorer, snapshot, "falls", clinical=True)
    order = expected_order(fresh)
    objecting = Scorer(
        scorer.models, scorer.scores, ObjectionList(Path(home) / "x.csv", frozenset(order[:3]))
    )
    _, results = objecting.ranked("falls", top=20)
    assert [r.person_ref for r in results] == order[3:23]
    assert [r.rank for r in results] == list(range(1, 21))


def referents(root: object, skip: tuple[type, ...]) -> Iterator[object]:
    """Every object reachable from `root` (not through `skip` types, modules or classes)."""
    seen, todo = {id(root)}, [root]
    while todo:
        item = todo.pop()
        yield item
        for child in gc.get_referents(item):
            if id(child) in seen or isinstance(child, (type, *skip)):
                continue
            if type(child).__name__ == "module":
                continue
            seen.add(id(child))
            todo.append(child)


@pytest.mark.slow  # needs the trained home
def test_a_scorer_holds_nothing_the_size_of_the_population(
    home: Path, snapshot: pd.DataFrame
) -> None:
    fresh = scorer_of(home)
    for outcome in PRODUCT.names():
        _, ranked = fresh.ranked(outcome, top=200)
        fresh.score_people(outcome, [r.person_ref for r in ranked])
    people = len(snapshot)
    big = [
        (type(o).__name__, n)
        # the bundles and the code lists are the same size whatever the population
        for o in referents(fresh, skip=(ModelBundle, Codes, CodeLists))
        if isinstance(o, (np.ndarray, pd.DataFrame, pd.Series, list, dict, set, frozenset, tuple))
        and (n := (o.size if isinstance(o, np.ndarray) else len(o))) >= people // 4
    ]
    assert big == []
    assert not hasattr(fresh, "snapshot")
    assert len(fresh._worded) <= WORDED_MAX
    with duckdb.connect(str(Home(home).store_path)) as con:  # no one holds the store open
        assert con.execute("SELECT count(*) FROM feature_snapshot").fetchone() == (people,)


@pytest.mark.slow  # needs the trained home
def test_a_home_without_exports_gets_them_when_the_service_starts(
    home: Path, scorer: Scorer, tmp_path: Path
) -> None:
    bare = copy_home(home, tmp_path / "bare")
    shutil.rmtree(Home(bare).scores_dir)
    started = scorer_of(bare)
    assert len(list(Home(bare).scores_dir.glob("scores-*.duckdb"))) == len(PRODUCT)
    for outcome in PRODUCT.names():
        _, ranked = scorer.ranked(outcome, top=100)
        ids = [r.person_ref for r in ranked]
        assert started.score_people_json(outcome, ids) == scorer.score_people_json(outcome, ids)


def test_lookups_find_every_id_by_binary_search_and_only_those(tmp_path: Path) -> None:
    ids = ["P10", "P1", "P2", "p1", "P1 ", "Zoë", "Ω7", "Ä", "P100", "P11"]
    people = pd.DataFrame(
        {
            "person_id": ids,
            "district": "North",
            "practice_code": "A1",
            "in_cohort": [i % 3 != 0 for i in range(len(ids))],
        }
    )
    members = people.loc[people["in_cohort"], "person_id"].tolist()
    scores = pd.DataFrame(
        {
            "person_id": members,
            "outcome": "falls",
            "model_version": "3",
            "probability": np.linspace(0.1, 0.9, len(members)),
            "band": "high",
            "rank_practice": range(1, len(members) + 1),
            "rank_district": range(1, len(members) + 1),
            "rank_county": range(1, len(members) + 1),
            "reasons_clinical": "[]",
            "reasons_non_clinical": "[]",
        }
    )
    key = ExportKey("falls", "carerisk-falls", "3", "run", "2025-04-01/10/x")
    path = write_export(tmp_path, key, people, scores)
    assert people_path(path).exists()
    before = pa.total_allocated_bytes()
    found = ScoresFile(path, key).people([*ids, "P3", "", "P", "Zoe", "P1  "])
    assert pa.total_allocated_bytes() - before < 1 << 20  # mapped, not read into memory
    assert sorted(found) == sorted(ids)
    for person, (cohort, row) in found.items():
        assert row[0] == person and cohort == (person in members)
        assert (row[3] is None) == (person not in members)


def test_an_export_without_its_people_file_is_refused_by_name(tmp_path: Path) -> None:
    people = pd.DataFrame(
        {"person_id": ["P1"], "district": "N", "practice_code": "A", "in_cohort": [False]}
    )
    scores = pd.DataFrame(columns=["person_id", "outcome", "model_version", *SCORE_COLUMNS])
    key = ExportKey("falls", "carerisk-falls", "3", "run", "2025-04-01/1/x")
    path = write_export(tmp_path, key, people, scores)
    people_path(path).write_bytes(b"not arrow")
    with pytest.raises(ScoresFileError, match="people file"):
        ScoresFile(path, key)
