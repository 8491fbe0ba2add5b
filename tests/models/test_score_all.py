"""The scores table carries what a service would serve (ranks, reasons per audience).

The rank rule on a hand-made tie case; an old scores table gains the new columns and keeps its
rows; on the session's trained home (tests/conftest.py), the stored reasons are the bundle's
own top reasons for each audience and the ranks follow the probabilities.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.fairness import FAIRNESS_GROUPS
from features.home import Home
from features.outcomes import PRODUCT
from features.scores_history import (
    COLUMNS,
    RANKED,
    read_scores,
    write_scores,
)
from features.snapshot import read_snapshot_people
from models.score_all import (
    AUDIENCES,
    cohort_members,
    finish,
    score_snapshot,
    stored_reasons,
    write_scores_files,
)
from training.champions import registry_champions

D = date(2024, 4, 1)


def unranked(rows: list[tuple[str, float, str, str]], outcome: str = "falls") -> pd.DataFrame:
    """Scores (RANKED columns) of (person, probability, practice, district) rows."""
    frame = pd.DataFrame(rows, columns=["person_id", "probability", "practice_code", "district"])
    frame["snapshot_date"] = D
    frame["outcome"] = outcome
    frame["band"] = "low"
    frame["model_name"], frame["model_version"], frame["run_id"] = "m", "1", "r"
    for column in FAIRNESS_GROUPS:
        if column != "district":
            frame[column] = "x"
    frame["reasons_clinical"] = frame["reasons_non_clinical"] = "[]"
    return frame[list(RANKED)]


def ranked(rows: list[tuple[str, float, str, str]]) -> pd.DataFrame:
    from features.scores_history import rank_scores

    return finish(rank_scores(unranked(rows))).set_index("person_id")


TIES = [
    ("P4", 0.5, "A1", "North"),
    ("P2", 0.5, "A1", "North"),
    ("P3", 0.9, "B1", "North"),
    ("P1", 0.5, "B1", "South"),
    ("P5", 0.2, "A1", "South"),
    ("P0", 0.9, "C1", "South"),
]


def test_ranks_put_the_highest_risk_first_and_break_ties_by_person_id() -> None:
    found = ranked(TIES)
    assert found["rank_county"].to_dict() == {"P0": 1, "P3": 2, "P1": 3, "P2": 4, "P4": 5, "P5": 6}
    assert found["rank_district"].to_dict() == {
        "P3": 1, "P2": 2, "P4": 3, "P0": 1, "P1": 2, "P5": 3,
    }  # fmt: skip
    assert found["rank_practice"].to_dict() == {
        "P2": 1, "P4": 2, "P5": 3, "P3": 1, "P1": 2, "P0": 1,
    }  # fmt: skip
    # the rows' order in does not matter
    assert ranked(TIES[::-1]).equals(found)


def test_outcomes_and_dates_are_ranked_apart() -> None:
    from features.scores_history import rank_scores

    two = pd.concat([unranked(TIES, "falls"), unranked(TIES[:2], "complex_dependency")])
    found = finish(rank_scores(two))
    dependency = found[found["outcome"] == "complex_dependency"].set_index("person_id")
    assert dependency["rank_county"].to_dict() == {"P2": 1, "P4": 2}


def test_an_objector_withdrawn_leaves_the_others_ranked_one_to_n(tmp_path: Path) -> None:
    store = Home(tmp_path).store_path
    write_scores(store, ranked(TIES).reset_index())
    without = ranked([r for r in TIES if r[0] != "P3"]).reset_index()
    written = write_scores(store, without, objections={"P3"})
    assert written[0].withdrawn == 1 and written[0].unchanged  # the rest re-ranked in place
    stored = read_scores(store, "falls").set_index("person_id")
    assert stored["rank_county"].to_dict() == {"P0": 1, "P1": 2, "P2": 3, "P4": 4, "P5": 5}
    assert stored["rank_district"].to_dict() == {"P2": 1, "P4": 2, "P0": 1, "P1": 2, "P5": 3}


NEW_COLUMNS = ("practice_code", "rank_practice", "rank_district", "rank_county",
               "reasons_clinical", "reasons_non_clinical")  # fmt: skip
OLD_COLUMNS = [c for c in COLUMNS if c not in NEW_COLUMNS]


def old_store(path: Path) -> Path:
    """A store whose scores table is an earlier version made: no places, ranks or reasons."""
    cols = ", ".join(f'"{c}" {COLUMNS[c]}' for c in OLD_COLUMNS)
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"CREATE TABLE scores_history ({cols}, scored_at TIMESTAMP, "
            "PRIMARY KEY (snapshot_date, outcome, person_id))"
        )
        con.execute(
            "INSERT INTO scores_history (snapshot_date, outcome, person_id, probability, band, "
            "model_name, model_version, run_id, scored_at) VALUES "
            "('2023-04-01', 'falls', 'P9', 0.3, 'low', 'm', '0', 'r0', now()::TIMESTAMP), "
            "('2023-04-01', 'falls', 'P8', 0.4, 'low', 'm', '0', 'r0', now()::TIMESTAMP)"
        )
    return path


def test_an_old_scores_table_reads_and_gains_the_columns_keeping_its_rows(tmp_path: Path) -> None:
    store = old_store(Home(tmp_path).store_path)
    before = read_scores(store, "falls")  # read-only: the new columns read as NULL
    assert before["person_id"].tolist() == ["P8", "P9"] and before["rank_county"].isna().all()
    write_scores(store, ranked(TIES).reset_index())
    with duckdb.connect(str(store), read_only=True) as con:
        names = [r[0] for r in con.execute("DESCRIBE scores_history").fetchall()]
    assert set(COLUMNS) <= set(names)
    after = read_scores(store, "falls")
    old = after[after["snapshot_date"] == date(2023, 4, 1)]
    assert old["person_id"].tolist() == ["P8", "P9"]
    assert old["probability"].tolist() == [0.4, 0.3] and old["reasons_clinical"].isna().all()
    assert sorted(after.loc[after["snapshot_date"] == D, "person_id"]) == sorted(r[0] for r in TIES)
    again = write_scores(store, ranked(TIES).reset_index())  # idempotent on the grown table
    assert again[0].unchanged
    lean = read_scores(store, "falls", reasons=False)  # what the monitor reads
    assert "reasons_clinical" not in lean.columns and "rank_county" in lean.columns
    assert lean["person_id"].tolist() == after["person_id"].tolist()


# --- on the trained home ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(trained_home: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    home = Home(trained_home)
    champions = registry_champions(home.default_tracking_uri, list(PRODUCT))
    snapshot = read_snapshot_people(home.store_path)
    scores = score_snapshot(snapshot, champions, chunk_rows=700)  # several chunks
    return snapshot, scores, {c.outcome.name: c for c in champions}


@pytest.mark.slow
def test_chunks_change_nothing(
    trained_home: Path, scored: tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]
) -> None:
    snapshot, scores, champions = scored
    whole = score_snapshot(snapshot, list(champions.values()))  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(whole, scores)


@pytest.mark.slow
def test_the_files_path_writes_the_same_scores_a_chunk_at_a_time(
    trained_home: Path,
    scored: tuple[pd.DataFrame, pd.DataFrame, dict[str, object]],
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    _, scores, champions = scored
    store = Home(trained_home).store_path
    folder = write_scores_files(store, list(champions.values()), tmp_path, chunk_rows=700)  # type: ignore[arg-type]
    assert folder is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranked"]  # the chunks are gone
    pd.testing.assert_frame_equal(finish(pq.read_table(str(folder)).to_pandas()), scores)


@pytest.mark.slow
def test_stored_reasons_are_the_bundles_own_for_each_audience(
    scored: tuple[pd.DataFrame, pd.DataFrame, dict[str, object]],
) -> None:
    snapshot, scores, champions = scored
    for outcome in PRODUCT:
        champion = champions[outcome.name]
        bundle = champion.bundle  # type: ignore[attr-defined]
        members = cohort_members(snapshot, outcome)
        mine = scores[scores["outcome"] == outcome.name].reset_index(drop=True)
        assert mine["person_id"].tolist() == members["person_id"].tolist()
        assert len(mine) > 100
        for audience, allowed in AUDIENCES.items():
            expected = bundle.assess(members, top_k=5, allowed=allowed)
            np.testing.assert_array_equal(mine["probability"], expected.probabilities)
            assert mine["band"].tolist() == expected.bands
            column = f"reasons_{audience}"
            for text, reasons in zip(mine[column], expected.reasons, strict=True):
                assert stored_reasons(bundle, text) == [r.model_dump() for r in reasons]
        shown = [json.loads(t) for t in mine["reasons_non_clinical"]]
        allowed_names = AUDIENCES["non_clinical"] or frozenset()
        assert all(name in allowed_names for row in shown for name, _, _ in row)
        assert any(len(row) == 5 for row in shown)


@pytest.mark.slow
def test_ranks_follow_the_probabilities_within_each_place(
    scored: tuple[pd.DataFrame, pd.DataFrame, dict[str, object]],
) -> None:
    _, scores, _ = scored
    for _, part in scores.groupby("outcome"):
        for rank, within in (
            ("rank_county", []),
            ("rank_district", ["district"]),
            ("rank_practice", ["practice_code"]),
        ):
            order = part.sort_values([*within, "probability", "person_id"],
                                     ascending=[*([True] * len(within)), False, True])  # fmt: skip
            expected = order.groupby(within).cumcount() + 1 if within else np.arange(len(order)) + 1
            np.testing.assert_array_equal(order[rank].to_numpy(), np.asarray(expected))
        assert part["practice_code"].notna().all() and (part["practice_code"] != "None").all()


@pytest.mark.slow
def test_score_all_command_upgrades_an_old_store_and_is_idempotent(
    trained_home: Path, tmp_path: Path
) -> None:
    from carerisk.commands.monitor import score_all
    from carerisk.settings import Settings

    layout = Home(tmp_path / "home")
    layout.root.mkdir()
    store = layout.store_path
    shutil.copy(Home(trained_home).store_path, store)
    with duckdb.connect(str(store)) as con:
        con.execute("DROP TABLE IF EXISTS scores_history")
    old_store(store)
    settings = Settings(home=layout, tracking_uri=Home(trained_home).default_tracking_uri)
    first = score_all(settings, list(PRODUCT), frozenset())
    assert all(not w.unchanged for w in first)
    again = score_all(settings, list(PRODUCT), frozenset())
    assert all(w.unchanged for w in again)
    falls = read_scores(store, "falls")
    assert {"P8", "P9"} <= set(falls["person_id"])  # the old rows are still there
    rows = {w.outcome: w.rows for w in first}
    assert falls["reasons_clinical"].notna().sum() == rows["falls"]
