"""The scores history and `carerisk monitor` on a real trained home.

The session's trained home (tests/conftest.py: `carerisk demo` on a 4,000-person county, both
outcomes trained, their runs in a real MLflow sqlite store) is left as it is: each test copies
its store and changes the copy's rows to make the drift it needs, then reads the champions
from the home's registry.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from carerisk.commands.monitor import score_all
from carerisk.settings import Settings
from evaluation.metrics import CalibrationRule
from evaluation.monitor import MonitorLimits
from features import contract
from features.extent import latest_event_date, snapshot_date
from features.home import Home
from features.outcomes import FALLS, PRODUCT
from features.schemas import code_valid
from features.scores_history import SCORES_TABLE, matured_outcomes, read_scores
from features.snapshot import read_snapshot_people, write_snapshot
from features.training_sets import build_training_set
from models.score_all import predict
from tests.live import carerisk
from training.champions import registry_champions
from training.monitor_run import MonitorFiles, monitor_champions
from training.tracking import PROFILE_ARTIFACT, client_for

pytestmark = pytest.mark.slow

EARLIER = date(2024, 1, 1)  # a snapshot whose 12 months lie within the county's data


@pytest.fixture
def home(trained_home: Path, tmp_path: Path) -> Settings:
    """A home holding a copy of the trained home's store with no scores yet (the demo that
    built it ran score-all), reading its tracking store."""
    layout = Home(tmp_path / "home")
    layout.root.mkdir()
    shutil.copy(Home(trained_home).store_path, layout.store_path)
    with duckdb.connect(str(layout.store_path)) as con:
        con.execute(f'DROP TABLE "{SCORES_TABLE}"')
    return Settings(home=layout, tracking_uri=Home(trained_home).default_tracking_uri)


def run_monitor(home: Settings, limits: MonitorLimits | None = None) -> dict[str, MonitorFiles]:
    done = monitor_champions(
        home.home.store_path,
        home.tracking_uri,
        list(PRODUCT),
        limits or MonitorLimits(),
        home.home.reports_dir,
        log_to_run=False,
    )
    return {d.result.meta["outcome"]: d for d in done}


def rebuild_snapshot(home: Settings, day: date | None = None) -> None:
    store = home.home.store_path
    write_snapshot(store, day or snapshot_date(store) or date.today(), PRODUCT)


def execute(home: Settings, sql: str, params: list[object] | None = None) -> int:
    with duckdb.connect(str(home.home.store_path)) as con:
        row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# --- the reference profile logged at training ---------------------------------------------


def test_each_champion_run_logged_a_reference_profile(home: Settings) -> None:
    client = client_for(home.tracking_uri)
    for champion in registry_champions(home.tracking_uri, list(PRODUCT)):
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(champion.run_id, PROFILE_ARTIFACT, tmp)
            profile = json.loads(Path(path).read_text())
        assert list(profile["features"]) == champion.bundle.feature_names
        assert profile["history_days"] == 730 and profile["index_date"] == "2024-04-01"
        assert set(profile["groups"]) == {"gp_system", "district"}
        assert "P0" not in json.dumps(profile)  # nothing names a person


# --- the scores history ---------------------------------------------------------------------


def test_score_all_keeps_every_cohort_members_score_once(home: Settings) -> None:
    first = score_all(home, list(PRODUCT), frozenset())
    snapshot = read_snapshot_people(home.home.store_path)
    champions = {c.outcome.name: c for c in registry_champions(home.tracking_uri, list(PRODUCT))}
    for written in first:
        outcome = written.outcome
        cohort = snapshot[snapshot[f"cohort_{outcome}"]]
        stored = read_scores(home.home.store_path, outcome)
        assert not written.unchanged and written.rows == len(cohort) == len(stored)
        assert stored["person_id"].tolist() == cohort["person_id"].tolist()
        expected = predict(champions[outcome].bundle, cohort.reset_index(drop=True))
        np.testing.assert_allclose(stored["probability"].to_numpy(), expected)
        assert stored["model_version"].unique().tolist() == [champions[outcome].version]
        assert stored["snapshot_date"].unique().tolist() == [written.snapshot_date]
        assert set(stored["age_band"]) <= {"18-44", "45-64", "65-74", "75-84", "85+"}
        assert stored[["sex", "gp_system", "district", "completeness"]].notna().all().all()
    before = read_scores(home.home.store_path, FALLS.name)
    again = score_all(home, list(PRODUCT), frozenset())
    assert all(w.unchanged and not w.replaced for w in again)
    pd.testing.assert_frame_equal(read_scores(home.home.store_path, FALLS.name), before)


def test_objectors_are_not_scored_and_their_kept_scores_go(home: Settings) -> None:
    first = score_all(home, [FALLS], frozenset())
    someone = read_scores(home.home.store_path, FALLS.name)["person_id"].iloc[0]
    written = score_all(home, [FALLS], frozenset({someone}))
    # their row is withdrawn; everyone else's scores are as they were
    assert written[0].withdrawn == 1 and written[0].rows == first[0].rows - 1
    assert written[0].unchanged
    assert someone not in set(read_scores(home.home.store_path, FALLS.name)["person_id"])


# --- drift -------------------------------------------------------------------------------


def test_a_clean_store_is_stable(home: Settings) -> None:
    done = run_monitor(home)
    for outcome, item in done.items():
        result = item.result
        assert result.verdict == "stable", (outcome, [r.text for r in result.reasons])
        assert result.features is not None and len(result.features) > 50
        assert max(f.psi for f in result.features) < 0.1
        assert result.meta["history_days"] == 730
        assert any("No score of this version" in n for n in result.notes)


def test_people_ten_years_older_are_flagged(home: Settings) -> None:
    execute(home, "UPDATE person SET birth_month = birth_month - INTERVAL 10 YEAR")
    rebuild_snapshot(home)
    done = run_monitor(home)
    falls = done["falls"].result
    assert falls.verdict == "retrain" and falls.exit_code == 4
    age = {f.name: f for f in falls.features or []}["age_years"]
    assert age.psi >= 0.25
    assert any(r.level == "retrain" and "(age_years)" in r.text for r in falls.reasons)
    # adults 18+ span more ages: the same ten years move them less (PSI 0.20 on the earlier
    # county, the retrain line is 0.25), but the shift is still named
    adults = done["complex_dependency"].result
    assert adults.verdict in ("watch", "retrain")
    assert any("(age_years)" in r.text for r in adults.reasons)


def new_snomed_code(home: Settings) -> str:
    column = next(c for c in contract.table("gp_event").columns if c.name == "snomed_code")
    with duckdb.connect(str(home.home.store_path), read_only=True) as con:
        used = {r[0] for r in con.execute("SELECT DISTINCT snomed_code FROM gp_event").fetchall()}
    return next(
        c
        for c in (f"99900{i:04d}" for i in range(10_000))
        if code_valid(column, c) and c not in used
    )


def test_practices_that_moved_gp_system_and_recode_are_flagged(home: Settings) -> None:
    """Vision practices' GP records since the validation date carry a code no list knows."""
    code = new_snomed_code(home)
    moved = execute(
        home,
        "UPDATE gp_event SET snomed_code = ? WHERE event_date >= DATE '2024-04-01' AND "
        "person_id IN (SELECT person_id FROM person WHERE gp_system = 'Vision')",
        [code],
    )
    assert moved > 500
    rebuild_snapshot(home)
    done = run_monitor(home)
    for item in done.values():
        feed = [r for r in item.result.reasons if r.area == "feed"]
        assert len(feed) == 1 and code in feed[0].text and "gp_event.snomed_code" in feed[0].text
        assert item.result.verdict == "watch"
    shifted = [r.text for r in done["complex_dependency"].result.reasons if r.area == "data"]
    assert shifted and all("within gp_system = Vision" in t for t in shifted)


def test_a_gp_feed_that_stops_is_flagged_within_its_gp_system(home: Settings) -> None:
    """Vision practices' GP records and prescriptions stop six months before the snapshot."""
    for table, column in (("gp_event", "event_date"), ("prescription", "issue_date")):
        execute(
            home,
            f"DELETE FROM {table} WHERE {column} >= DATE '2024-10-01' AND person_id IN "
            "(SELECT person_id FROM person WHERE gp_system = 'Vision')",
        )
    rebuild_snapshot(home)
    result = run_monitor(home)["complex_dependency"].result
    assert result.verdict == "watch"
    medicines = {f.name: f for f in result.features or []}["medicines_90d"]
    assert medicines.psi < 0.1  # the whole county barely moves ...
    assert [(g.descriptor, g.group) for g in medicines.groups][:1] == [("gp_system", "Vision")]


# --- realised performance ----------------------------------------------------------------


def scored_a_year_earlier(home: Settings) -> None:
    """Score-all at an earlier snapshot (its horizon now inside the data), then the latest."""
    rebuild_snapshot(home, EARLIER)
    score_all(home, list(PRODUCT), frozenset())
    rebuild_snapshot(home)


def test_matured_outcomes_are_joined_to_the_scores_served(home: Settings) -> None:
    scored_a_year_earlier(home)
    store = home.home.store_path
    end = latest_event_date(store)
    assert end is not None
    matured = matured_outcomes(store, FALLS, end)
    served = read_scores(store, FALLS.name, [EARLIER])
    assert len(matured.rows) == len(served) > 500 and matured.unmatched == {EARLIER.isoformat(): 0}
    assert matured.pending.empty
    truth = build_training_set(store, FALLS, [EARLIER])[["person_id", "label"]]
    joined = matured.rows.merge(truth, on="person_id", suffixes=("", "_rebuilt"))
    assert len(joined) == len(served)
    assert (joined["label"] == joined["label_rebuilt"]).all()
    kept = served.set_index("person_id")["probability"]
    np.testing.assert_array_equal(
        matured.rows["probability"].to_numpy(), kept.loc[matured.rows["person_id"]].to_numpy()
    )
    wide = CalibrationRule((0.3, 3.0), (0.3, 3.0))  # the small test model
    lenient = MonitorLimits(slope_rule=wide, oe_rule=wide)
    falls = run_monitor(home, lenient)["falls"].result
    assert falls.performance is not None and falls.performance.n == len(served)
    assert falls.by_snapshot["snapshot_date"].tolist() == [EARLIER.isoformat()]
    assert falls.performance.auroc.value > 0.6
    assert not [r for r in falls.reasons if r.area == "performance"]


def test_scores_that_failed_are_judged_from_what_was_served(home: Settings) -> None:
    """The monitor reads the probabilities kept, not the model's: served backwards, the
    realised AUROC falls below a half and the verdict is retrain."""
    scored_a_year_earlier(home)
    execute(home, "UPDATE scores_history SET probability = 1 - probability")
    falls = run_monitor(home)["falls"].result
    assert falls.verdict == "retrain"
    assert falls.performance is not None and falls.performance.auroc.value < 0.5
    assert any(r.area == "performance" and "realised AUROC" in r.text for r in falls.reasons)


def test_rows_retired_since_scoring_are_counted_not_lost(home: Settings) -> None:
    scored_a_year_earlier(home)
    served = read_scores(home.home.store_path, FALLS.name, [EARLIER])
    gone = served["person_id"].iloc[:3].tolist()
    with duckdb.connect(str(home.home.store_path)) as con:
        for name in contract.TABLE_NAMES:
            con.execute(f'DELETE FROM "{name}" WHERE person_id IN (SELECT unnest(?))', [gone])
    end = latest_event_date(home.home.store_path)
    assert end is not None
    matured = matured_outcomes(home.home.store_path, FALLS, end)
    assert matured.unmatched == {EARLIER.isoformat(): 3}
    assert len(matured.rows) == len(served) - 3


# --- the command --------------------------------------------------------------------------


def test_cli_score_all_and_monitor_json_and_exit_status(home: Settings) -> None:
    env = {"MLFLOW_TRACKING_URI": home.tracking_uri}
    root = home.home.root
    written = carerisk(root, "score-all", "--json", env=env)
    assert written.returncode == 0, written.stderr[-2000:]
    assert {w["outcome"] for w in json.loads(written.stdout)["written"]} == {
        o.name for o in PRODUCT
    }
    clean = carerisk(root, "monitor", "--json", "--no-log", env=env)
    assert clean.returncode == 0, clean.stderr[-2000:]
    payload = json.loads(clean.stdout)
    assert payload["verdict"] == "stable" and payload["exit_code"] == 0
    assert {c["outcome"] for c in payload["champions"]} == {o.name for o in PRODUCT}
    assert all(Path(c["html"]).is_file() for c in payload["champions"])
    execute(home, "UPDATE person SET birth_month = birth_month - INTERVAL 10 YEAR")
    rebuild_snapshot(home)
    drifted = carerisk(root, "monitor", "--no-log", env=env)
    assert drifted.returncode == 4, drifted.stdout[-2000:] + drifted.stderr[-2000:]
    assert "Verdict: retrain (exit status 4)" in drifted.stdout
    assert "(age_years)" in drifted.stdout


def test_the_report_is_logged_to_the_champion_run(home: Settings) -> None:
    done = monitor_champions(
        home.home.store_path, home.tracking_uri, [FALLS], MonitorLimits(),
        home.home.reports_dir, log_to_run=True,
    )  # fmt: skip
    item = done[0]
    folder = item.logged_to
    assert folder == f"monitor/{item.result.meta['snapshot_date']}"
    client = client_for(home.tracking_uri)
    logged = {Path(a.path).name for a in client.list_artifacts(item.result.meta["run_id"], folder)}
    assert logged == {item.html.name, item.json.name}
