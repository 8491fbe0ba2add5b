"""Faults: tracking server down, corrupted model, audit store unwritable, SIGKILL under load,
a training run killed half way, and a stale feature snapshot.

Each destructive test works on its own copy of the trained home.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx
import pytest

import tests.live
from features.home import Home
from features.outcomes import FALLS
from models.registered import BUNDLE_ARTIFACT
from serving.audit import AuditLog
from tests.live import TEST_CONFIG, LiveService, descendants, snapshot_people

pytestmark = [pytest.mark.server, pytest.mark.slow]

# A closed loopback port: the tracking client fails at once (no retries, short timeout).
DEAD_TRACKING = {
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
}


def copy_home(trained_home: Path, tmp_path: Path) -> Path:
    """A private copy of the trained home (without the shared server's logs)."""
    return tests.live.copy_home(trained_home, tmp_path / "home")


@pytest.fixture(scope="module")
def offline_service(
    trained_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """A server on a copied home whose tracking server is down, with a very lax stale limit."""
    home = copy_home(trained_home, tmp_path_factory.mktemp("offline"))
    with LiveService(home, env=DEAD_TRACKING).running("--stale-after-days", "100000") as service:
        yield service


def score(client: httpx.Client, ids: list[str], outcome: str = "falls") -> httpx.Response:
    return client.post("/v1/score", json={"outcome": outcome, "person_ids": ids})


def test_tracking_down_serves_the_imported_champions(offline_service: LiveService) -> None:
    assert "tracking server unavailable" in offline_service.log()
    ids = snapshot_people(offline_service.home)["falls"][:3]
    with offline_service.client("gp") as client:
        response = score(client, ids)
    assert response.status_code == 200
    assert [r["person_ref"] for r in response.json()["results"]] == ids


def test_stale_snapshot_note(offline_service: LiveService, live_service: LiveService) -> None:
    """The synthetic snapshot (2025-04-01) is older than the default 120 days: every answer
    carries a note; with a limit of 100,000 days none does."""
    ids = snapshot_people(live_service.home)["falls"][:2]
    with live_service.client("gp") as client:
        stale = score(client, ids).json()["results"]
    with offline_service.client("gp") as client:
        fresh = score(client, ids).json()["results"]
    assert all(any("days old" in n and "limit is 120" in n for n in r["notes"]) for r in stale)
    assert all(r["notes"] == [] for r in fresh)


def test_audit_unwritable_gives_503_and_no_score(offline_service: LiveService) -> None:
    """The audit lock file replaced by a directory: even root cannot open it for writing."""
    home = offline_service.home
    ids = snapshot_people(home)["falls"][:2]
    lock = AuditLog.in_home(home).lock_path
    before = AuditLog.in_home(home).count()
    lock.unlink()
    lock.mkdir()
    try:
        with offline_service.client("gp") as client:
            response = score(client, ids)
    finally:
        lock.rmdir()
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "audit_unavailable"
    assert "probability" not in response.text and "results" not in body
    assert not any(i in response.text for i in ids)
    log = AuditLog.in_home(home)
    assert log.count() == before and log.verify().ok
    with offline_service.client("gp") as client:  # writable again: answers again
        assert score(client, ids).status_code == 200


def test_corrupted_model_refuses_to_start(trained_home: Path, tmp_path: Path) -> None:
    home = copy_home(trained_home, tmp_path)
    models = Home(home).bentoml_home / "models" / FALLS.model_name
    [model_file] = models.glob(f"v*/{BUNDLE_ARTIFACT}/model.txt")
    with model_file.open("ab") as f:
        f.write(b"\n")
    # tracking down, so the start cannot re-import a good copy over the damaged one
    env = {**tests.live.child_env(), **DEAD_TRACKING}
    command = [sys.executable, "-m", "carerisk", "--home", str(home), "serve", "--port", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "model.txt" in said and "carerisk-falls" in said, said


def test_sigkill_under_load_loses_no_audited_answer(trained_home: Path, tmp_path: Path) -> None:
    home = copy_home(trained_home, tmp_path)
    service = LiveService(home)
    service.add_keys()
    service.start()
    people = snapshot_people(home)["falls"]
    try:
        answered = hammer_then_kill(service, people)
    finally:
        service.stop(signal.SIGKILL)
    assert answered, "no request got a 200 before the kill"
    service.start()  # same home, same port
    try:
        with service.client("admin") as client:
            verdict = client.get("/v1/admin/audit/verify").json()
    finally:
        service.stop()
    assert verdict["ok"], verdict
    audited = audited_people(home, "score")
    missing = [p for p in answered if p not in audited]
    assert not missing, f"{len(missing)} answered people have no audit record"


def hammer_then_kill(service: LiveService, people: list[str]) -> list[str]:
    """Score one person a request from 4 threads; SIGKILL the server after ~3 s.
    Returns the people whose request got a 200."""
    answered: list[str] = []
    stop_at = time.monotonic() + 3.0

    def worker(offset: int) -> None:
        with service.client("gp") as client:
            for i in range(offset, len(people), 4):
                if time.monotonic() > stop_at + 10:
                    return
                try:
                    response = score(client, [people[i]])
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 200:
                    answered.append(people[i])

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker, k) for k in range(4)]
        while time.monotonic() < stop_at:
            time.sleep(0.1)
        assert service.process is not None
        family = [service.process.pid, *descendants(service.process.pid)]
        service.stop(signal.SIGKILL)
        for future in futures:
            future.result()
    deadline = time.monotonic() + 10
    while [pid for pid in family if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in family if alive(pid)], "a server process outlived the SIGKILL"
    return answered


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def audited_people(home: Path, endpoint: str) -> set[str]:
    records = AuditLog.in_home(home).tail(1_000_000)
    return {p for r in records if r.endpoint == endpoint and r.status == 200 for p in r.person_ids}


def registry_state(home: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(Home(home).mlflow_db) as con:
        versions = con.execute("SELECT name, version FROM model_versions ORDER BY 1, 2").fetchall()
        aliases = con.execute("SELECT * FROM registered_model_aliases ORDER BY 1, 2").fetchall()
    return versions, aliases


def run_count(home: Path) -> int:
    with sqlite3.connect(Home(home).mlflow_db) as con:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_training_killed_half_way_leaves_the_registry(trained_home: Path, tmp_path: Path) -> None:
    home = copy_home(trained_home, tmp_path)
    before, runs = registry_state(home), run_count(home)
    command = [sys.executable, "-m", "carerisk", "--home", str(home), "train",
               "--outcome", "falls", "--config", str(TEST_CONFIG)]  # fmt: skip
    process = subprocess.Popen(
        command, env=tests.live.child_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while run_count(home) == runs and process.poll() is None:
            assert time.monotonic() < deadline, "training never started a run"
            time.sleep(0.2)
        time.sleep(1.0)  # half way: the run exists, the fit is under way
        assert process.poll() is None, "training finished before it could be killed"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert run_count(home) > runs  # it really was part way through
    assert registry_state(home) == before


def test_a_copied_home_names_only_itself(trained_home: Path, tmp_path: Path) -> None:
    """The copies the destructive tests (and each xdist worker) use write nothing into the home
    they came from: the tracking store and the load log name the copy."""
    home = copy_home(trained_home, tmp_path)
    paths = {
        "runs": "artifact_uri", "experiments": "artifact_location",
        "model_versions": "storage_location", "logged_models": "artifact_location",
    }  # fmt: skip
    with sqlite3.connect(Home(home).mlflow_db) as con:
        for table, column in paths.items():
            found = [str(r[0]) for r in con.execute(f"SELECT {column} FROM {table}")]
            assert not [f for f in found if str(trained_home) in f], (table, found)
            assert [f for f in found if str(home) in f], (table, found)
    with duckdb.connect(str(Home(home).store_path), read_only=True) as store:
        found = [r[0] for r in store.execute("SELECT extract_dir FROM load_log").fetchall()]
    assert found and all(f.startswith(str(home)) for f in found), found
