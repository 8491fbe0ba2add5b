"""A home can be moved: a copy of a trained home, its original deleted, is found out by
`carerisk home check`, fixed (by --fix, or by the first command run in it), and then serves,
trains and reports from its own files alone."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from features.home import Home
from features.outcomes import FALLS
from models.registered import CHALLENGER
from tests.live import TEST_CONFIG, LiveService, carerisk, copy_home, snapshot_people
from training.home_check import (
    check_home,
    inferred_root,
    move_records,
    recorded_root,
    settle,
)

pytestmark = pytest.mark.slow


def naming(home: Home, place: Path) -> list[str]:
    """Every text value in the tracking database and the store that contains `place/`."""
    needle = f"{place}/"
    found = []
    with sqlite3.connect(home.mlflow_db) as con:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for column in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                sql = f'SELECT "{column[1]}" FROM "{table}" WHERE instr("{column[1]}", ?) > 0'
                found += [str(v) for (v,) in con.execute(sql, [needle]).fetchall()]
    with duckdb.connect(str(home.store_path), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR' AND table_schema = 'main'"
        ).fetchall()
        for table, column in columns:
            sql = f'SELECT "{column}" FROM "{table}" WHERE instr("{column}", ?) > 0'
            found += [str(v) for (v,) in con.execute(sql, [needle]).fetchall()]
    return found


@pytest.fixture
def restored(trained_home: Path, tmp_path: Path) -> tuple[Home, Path]:
    """A plain copy (as a backup restored with cp -a) of a copy of the trained home, whose
    original is then deleted: (the restored home, the place it was copied from)."""
    original = copy_home(trained_home, tmp_path / "original")
    shutil.copytree(original, tmp_path / "restored", symlinks=True)
    shutil.rmtree(original)
    return Home((tmp_path / "restored").resolve()), original.resolve()


def test_check_names_the_old_place_and_fix_points_every_record_here(
    restored: tuple[Home, Path],
) -> None:
    home, original = restored
    found = check_home(home, home.default_tracking_uri)
    assert found.was_at == original and not found.ok
    columns = {(r.database.name, r.table, r.column) for r in found.recorded}
    assert {("mlflow.db", "runs", "artifact_uri"), ("mlflow.db", "experiments",
             "artifact_location"), ("mlflow.db", "model_versions", "storage_location"),
            ("store.duckdb", "load_log", "extract_dir")} <= columns  # fmt: skip
    assert any(FALLS.model_name in line and "missing" in line for line in found.missing)

    told = carerisk(home.root, "home", "check")
    assert told.returncode == 1 and f"it was at {original}" in told.stderr, told.stderr
    assert "home check --fix" in told.stderr
    assert naming(home, original), "the check must write nothing"

    fixed = carerisk(home.root, "home", "check", "--fix", "--json")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads(fixed.stdout) == {
        "home": str(home.root), "was_at": None, "recorded": [], "missing": [],
        "tracking_outside": None, "ok": True,
    }  # fmt: skip
    assert naming(home, original) == []
    assert recorded_root(home) == home.root


def test_a_sibling_folder_sharing_the_old_name_is_left_alone(
    restored: tuple[Home, Path],
) -> None:
    home, original = restored
    client = MlflowClient(tracking_uri=home.default_tracking_uri)
    version = client.get_model_version_by_alias(FALLS.model_name, CHALLENGER)
    sibling = f"{original}-old/extract"
    client.set_tag(version.run_id, "elsewhere", sibling)
    moved = move_records(home, original)
    assert sum(r.rows for r in moved) > 0
    assert client.get_run(version.run_id).data.tags["elsewhere"] == sibling
    assert check_home(home, home.default_tracking_uri).ok


def test_a_home_made_before_the_location_file_is_found_by_its_artifact_locations(
    restored: tuple[Home, Path],
) -> None:
    home, original = restored
    home.location_path.unlink()
    assert inferred_root(home) == original == recorded_root(home)
    settled = settle(home)
    assert settled is not None and settled[0] == original and settled[1]
    assert inferred_root(home) == home.root == recorded_root(home)
    home.location_path.unlink()  # an old home in its own place: nothing moves, the file is made
    assert settle(home) is None
    assert json.loads(home.location_path.read_text()) == {"root": str(home.root)}
    assert check_home(home, home.default_tracking_uri).ok


@pytest.mark.server
def test_a_restored_home_serves_trains_and_reports_from_its_own_files(
    restored: tuple[Home, Path],
) -> None:
    home, original = restored
    # The champions must come from this home's MLflow artifacts, not an earlier import.
    shutil.rmtree(home.bentoml_home)

    trained = carerisk(home.root, "train", "--outcome", "falls", "--config", str(TEST_CONFIG),
                       "--json")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"this home was at {original}" in trained.stderr
    run = MlflowClient(tracking_uri=home.default_tracking_uri).get_run(
        json.loads(trained.stdout)["run_id"]
    )
    assert run.info.artifact_uri.startswith(home.artifacts_dir.as_uri() + "/")

    report = carerisk(home.root, "evaluate", "--model", f"{FALLS.model_name}@{CHALLENGER}",
                      "--json")  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    assert json.loads(report.stdout)["meta"]["synthetic"] is True  # the truth of its own extract
    assert any(home.reports_dir.glob(f"{FALLS.model_name}-*.html"))

    person = snapshot_people(home.root)[FALLS.name][0]
    with LiveService(home.root).running() as served, served.client("gp") as client:
        answer = client.post("/v1/person", json={"person_id": person})
    assert answer.status_code == 200, answer.text
    assert naming(home, original) == []
    assert carerisk(home.root, "home", "check").returncode == 0


def test_with_a_tracking_store_outside_the_home_its_registry_is_not_checked(
    restored: tuple[Home, Path],
) -> None:
    home, original = restored
    outside = "sqlite:////srv/tracking/mlflow.db"
    found = check_home(home, outside)
    assert found.tracking_outside == outside and found.missing == ()
    assert {r.database.name for r in found.recorded} == {"mlflow.db", "store.duckdb"}
    assert settle(home) is not None  # the home's own files are moved all the same
    assert naming(home, original) == []
