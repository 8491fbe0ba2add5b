"""Swapping champions and snapshot without downtime (serving/swap.py, serving/watch.py).

Unit tests of the swap holder, the pinned request state, the release of a swapped-out scorer
and the snapshot's fingerprint; then a real BentoML server (two workers) on a copy of the
trained home: a reload under continuous load answers every request, switches version, never
mixes two versions in one answer and names them in the audit; a reload of a damaged bundle or
of a bundle with another feature list is refused, saying why, and the old version serves on;
a watching server reloads by itself when the champion or the snapshot changes.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from features.home import Home
from features.outcomes import PRODUCT
from models import ModelBundle
from models.registered import BUNDLE_ARTIFACT, CHAMPION
from serving.audit import AuditLog
from serving.state import ServiceState
from serving.swap import ScorerHolder, release
from serving.watch import bump_generation, read_generation, snapshot_fingerprint
from tests.live import LiveService, copy_home, keyed_since, snapshot_people

# --- the holder, the pinned state, the release ----------------------------------------------


class FakeScorer:
    """Stands in for a Scorer where only identity, close() and collection matter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self.cycle = self  # only the collector frees it

    def close(self) -> None:
        self.closed = True


def state_with(holder: ScorerHolder) -> ServiceState:
    none: Any = None
    return ServiceState(none, (), holder, none, none, none, none, none, none)


def test_holder_swaps_one_reference() -> None:
    old, new = FakeScorer("old"), FakeScorer("new")
    holder = ScorerHolder(old)  # type: ignore[arg-type]
    assert holder.swap(new) is old  # type: ignore[arg-type]
    assert holder.current is new and holder.swaps == 1


def test_a_pinned_state_keeps_its_scorer_through_a_swap() -> None:
    old, new = FakeScorer("old"), FakeScorer("new")
    holder = ScorerHolder(old)  # type: ignore[arg-type]
    state = state_with(holder)
    pinned = state.pin()
    holder.swap(new)  # type: ignore[arg-type]
    assert pinned.scorer is old and pinned.scorer is old  # read twice: the same one
    assert state.scorer is new and state.pin().scorer is new
    assert pinned.holder is holder and pinned.keys is state.keys  # the rest is shared


def test_release_closes_and_collects_the_old_scorer_once_unused() -> None:
    old = FakeScorer("old")
    gone = weakref.ref(old)
    in_flight = [old]  # a request still using it
    thread = release(old, frozen=False, wait=10)  # type: ignore[arg-type]
    del old
    time.sleep(0.2)
    assert gone() is not None and gone().closed  # type: ignore[union-attr]
    in_flight.clear()  # the request ends
    thread.join(10)
    assert gone() is None


def test_release_refreezes_a_frozen_process() -> None:
    gc.freeze()
    try:
        old = FakeScorer("old")
        gone = weakref.ref(old)
        gc.freeze()  # the old state was frozen with the rest, as in the service
        thread = release(old, frozen=True, wait=10)  # type: ignore[arg-type]
        del old
        thread.join(10)
        assert gone() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


class Acyclic:
    """A scorer as the real one is: freed by its last reference, no cycle."""

    def close(self) -> None:
        pass


def test_releasing_an_acyclic_scorer_runs_no_full_collection() -> None:
    full: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(seen)
    try:
        old = Acyclic()
        gone = weakref.ref(old)
        thread = release(old, frozen=False, wait=10)  # type: ignore[arg-type]
        del old
        thread.join(10)
    finally:
        gc.callbacks.remove(seen)
    assert gone() is None and not full  # a full pass stalls every request for its length


def test_generation_file_changes_when_bumped(tmp_path: Path) -> None:
    path = Home(tmp_path).serving_generation
    assert read_generation(path) == ""
    first = bump_generation(path)
    assert read_generation(path) == first
    assert bump_generation(path) != first


def test_snapshot_fingerprint_sees_a_rewrite_at_the_same_date(tmp_path: Path) -> None:
    store = Home(tmp_path).store_path
    with duckdb.connect(str(store)) as con:
        con.execute("CREATE TABLE feature_snapshot AS SELECT 'P1' AS person_id, "
                    "DATE '2025-01-01' AS index_date, 1.0 AS x")  # fmt: skip
    before = snapshot_fingerprint(store)
    assert before.startswith("2025-01-01/1/") and snapshot_fingerprint(store) == before
    with duckdb.connect(str(store)) as con:
        con.execute("UPDATE feature_snapshot SET x = 2.0")
    assert snapshot_fingerprint(store) != before


# --- a real server ---------------------------------------------------------------------------

FAST = ("--rate-per-second", "2000", "--burst", "2000")  # the load must not meet 429s


@pytest.fixture(scope="module")
def home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained home: these tests move its champions and change its snapshot."""
    return copy_home(trained_home, tmp_path_factory.mktemp("reload") / "home")


@pytest.fixture(scope="module")
def served(home: Path) -> Iterator[LiveService]:
    with LiveService(home).running("--workers", "2", *FAST) as service:
        yield service


def registry(home: Path) -> Any:
    from mlflow import MlflowClient

    uri = Home(home).default_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_versions(home: Path) -> dict[str, str]:
    client = registry(home)
    return {
        o.name: str(client.get_model_version_by_alias(o.model_name, CHAMPION).version)
        for o in PRODUCT
    }


def reregister(home: Path, outcome: str) -> str:
    """The champion's own run registered again as a new version, which becomes champion."""
    client = registry(home)
    name = next(o.model_name for o in PRODUCT if o.name == outcome)
    champion = client.get_model_version_by_alias(name, CHAMPION)
    source = f"{client.get_run(champion.run_id).info.artifact_uri}/{BUNDLE_ARTIFACT}"
    version = client.create_model_version(name, source, run_id=champion.run_id)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(version.version)


def register_altered(home: Path, outcome: str, alter: Callable[[Path], None]) -> str:
    """A new run holding the champion's bundle changed by `alter`, registered as a new version
    that becomes champion; returns the version it replaced."""
    client = registry(home)
    name = next(o.model_name for o in PRODUCT if o.name == outcome)
    champion = client.get_model_version_by_alias(name, CHAMPION)
    found = client.get_experiment_by_name("reload-tests")
    experiment = (
        found.experiment_id
        if found
        else client.create_experiment(
            "reload-tests", artifact_location=(Home(home).artifacts_dir / "reload-tests").as_uri()
        )
    )
    run = client.create_run(experiment)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(client.download_artifacts(champion.run_id, BUNDLE_ARTIFACT, tmp))
        alter(bundle)
        client.log_artifacts(run.info.run_id, str(bundle), BUNDLE_ARTIFACT)
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/{BUNDLE_ARTIFACT}"
    version = client.create_model_version(name, source, run_id=run.info.run_id)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(champion.version)


def restore(home: Path, outcome: str, version: str) -> None:
    name = next(o.model_name for o in PRODUCT if o.name == outcome)
    registry(home).set_registered_model_alias(name, CHAMPION, version)


def damage_checksum(bundle: Path) -> None:
    path = bundle / "calibrator.json"
    path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")


def reorder_features(bundle: Path) -> None:
    """Checksums that match, but the first two features swapped."""
    loaded = ModelBundle.load(bundle)
    first, second, *rest = loaded.features
    shutil.rmtree(bundle)
    replace(loaded, features=(second, first, *rest)).save(bundle)


def reload(service: LiveService) -> httpx.Response:
    with service.client("admin") as admin:
        return admin.post("/v1/admin/reload", timeout=120)


def versions_in(answer: dict[str, Any]) -> set[str]:
    return {r["model_version"] for r in answer["results"]}


class Load:
    """Client threads calling score, person, FHIR and register throughout; every answer kept."""

    def __init__(self, service: LiveService, people: list[str], threads: int = 6) -> None:
        self.service, self.people = service, people
        self.stop = threading.Event()
        self.answers: list[tuple[str, int, Any]] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, index: int) -> None:
        calls = [self._score, self._person, self._fhir, self._register]
        with self.service.client("gp") as client:
            n = index
            while not self.stop.is_set():
                person = self.people[n % len(self.people)]
                kind, response = calls[n % len(calls)](client, person)
                body = response.json() if response.status_code == 200 else response.text
                with self.lock:
                    self.answers.append((kind, response.status_code, body))
                n += 1

    def _score(self, client: httpx.Client, person: str) -> tuple[str, httpx.Response]:
        return "score", client.post("/v1/score", json={"outcome": "falls", "person_ids": [person]})

    def _person(self, client: httpx.Client, person: str) -> tuple[str, httpx.Response]:
        return "person", client.post("/v1/person", json={"person_id": person})

    def _fhir(self, client: httpx.Client, person: str) -> tuple[str, httpx.Response]:
        body = {"outcome": "falls", "person_id": person}
        return "fhir", client.post("/v1/fhir/risk-assessment", json=body)

    def _register(self, client: httpx.Client, person: str) -> tuple[str, httpx.Response]:
        params = {"outcome": "complex_dependency", "top": 200}
        return "register", client.get("/v1/register", params=params)

    def count(self) -> int:
        with self.lock:
            return len(self.answers)


def served_pair(kind: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(falls version, complex dependency version) an answer names; None where it names none."""
    if kind == "score":
        (version,) = versions_in(body)
        return version, None
    if kind == "fhir":
        return body["method"]["coding"][0]["version"], None
    if kind == "register":
        found = {p["model_version"] for p in body["people"]}
        assert len(found) == 1, f"one register answer names {found}"
        return None, found.pop()
    answers = body["outcomes"]
    return answers["falls"]["model_version"], answers["complex_dependency"]["model_version"]


@pytest.mark.server
@pytest.mark.slow
def test_a_reload_under_load_answers_everyone_and_switches(served: LiveService) -> None:
    home = served.home
    people = snapshot_people(home)["falls"][:40]  # the falls cohort is in both
    old = champion_versions(home)
    audit = AuditLog.in_home(home)
    before = audit.count()
    new = {outcome: reregister(home, outcome) for outcome in old}
    with Load(served, people) as load:
        while load.count() < 30:
            time.sleep(0.05)
        response = reload(served)
        assert response.status_code == 200, response.text
        switched_at = load.count()
        wait_until_all_workers_serve(served, people[0], new["falls"])
        time.sleep(0.5)
    answer = response.json()
    assert {m["outcome"]: m["model_version"] for m in answer["before"]["models"]} == old
    assert {m["outcome"]: m["model_version"] for m in answer["after"]["models"]} == new
    assert answer["after"]["snapshot_date"] == answer["before"]["snapshot_date"]

    failures = [(k, s, b) for k, s, b in load.answers if s != 200]
    assert not failures, failures[:3]
    pairs = [served_pair(kind, body) for kind, _, body in load.answers]
    allowed = {(old["falls"], old["complex_dependency"]), (new["falls"], new["complex_dependency"])}
    for (kind, _, _), (falls, complex_) in zip(load.answers, pairs, strict=True):
        assert falls in (old["falls"], new["falls"], None), kind
        assert complex_ in (old["complex_dependency"], new["complex_dependency"], None), kind
        if falls and complex_:
            assert (falls, complex_) in allowed, f"a {kind} answer mixed {falls} and {complex_}"
    assert pairs[0][0] in (old["falls"], None) and switched_at > 0
    tail = [p for p in pairs[-20:] if p[0]]
    assert tail and all(p[0] == new["falls"] for p in tail), tail

    records = keyed_since(audit, before)
    scored = [r for r in records if r.endpoint in ("score", "fhir") and r.outcome == "ok"]
    assert {r.model_version for r in scored} == {old["falls"], new["falls"]}
    day = answer["after"]["snapshot_date"]
    assert all(r.snapshot_date == day for r in scored)
    reloads = [r for r in records if r.endpoint == "reload_service"]
    assert [(r.outcome, r.status) for r in reloads] == [("ok", 200)]
    assert audit.verify().ok
    wait_for(lambda: served.log().count("swapped-out scorer freed") == 2, 30)  # both workers


def wait_until_all_workers_serve(service: LiveService, person: str, version: str) -> None:
    """Every answer names `version` for 20 answers in a row (each worker has followed)."""
    deadline, streak = time.monotonic() + 30, 0
    with service.client("gp") as client:
        while streak < 20:
            assert time.monotonic() < deadline, "the workers did not all switch"
            answer = client.post("/v1/score", json={"outcome": "falls", "person_ids": [person]})
            streak = streak + 1 if versions_in(answer.json()) == {version} else 0
            time.sleep(0.05)


def score_version(service: LiveService, person: str) -> str:
    with service.client("gp") as client:
        body = {"outcome": "falls", "person_ids": [person]}
        response = client.post("/v1/score", json=body)
    assert response.status_code == 200, response.text
    (version,) = versions_in(response.json())
    return version


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize(
    ("alter", "said"),
    [(damage_checksum, "does not match its checksum"),
     (reorder_features, "feature list disagrees with the registry")],
)  # fmt: skip
def test_a_failed_reload_keeps_the_old_version_and_says_why(
    served: LiveService, alter: Callable[[Path], None], said: str
) -> None:
    person = snapshot_people(served.home)["falls"][0]
    serving = score_version(served, person)
    good = register_altered(served.home, "falls", alter)
    try:
        response = reload(served)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "reload_refused" and said in body["message"], body
        for _ in range(10):  # both workers
            assert score_version(served, person) == serving
        with served.client("gp") as client:
            answer = client.post("/v1/person", json={"person_id": person})
        assert answer.status_code == 200
    finally:
        restore(served.home, "falls", good)
    pointer = Home(served.home).champions_pointer.read_text()
    assert f":v{serving}-" in pointer  # the refused version was never pointed at


@pytest.mark.server
@pytest.mark.slow
def test_a_busy_or_unauthorised_reload_is_refused(served: LiveService) -> None:
    with served.client("gp") as gp:
        assert gp.post("/v1/admin/reload").status_code == 403
    with served.client("admin") as admin:
        spec = admin.get("/v1/openapi.json").json()["paths"]["/admin/reload"]["post"]
    assert {"200", "409", "422"} <= set(spec["responses"])


@pytest.mark.server
@pytest.mark.slow
def test_a_watching_server_reloads_on_a_new_champion_and_a_new_snapshot(
    served: LiveService,
) -> None:
    home = served.home
    person = snapshot_people(home)["falls"][0]
    watching = LiveService(home)
    with watching.running("--watch-seconds", "1", *FAST):
        new = reregister(home, "falls")
        wait_for(lambda: score_version(watching, person) == new)
        day = served_day(watching, person)
        shift_snapshot(Home(home).store_path, days=1)
        wait_for(lambda: served_day(watching, person) != day)
        assert "reloading: the champions or the snapshot changed" in watching.log()


def served_day(service: LiveService, person: str) -> str:
    with service.client("gp") as client:
        body = {"outcome": "falls", "person_ids": [person]}
        return str(client.post("/v1/score", json=body).json()["results"][0]["index_date"])


def shift_snapshot(store: Path, days: int) -> None:
    """Move the snapshot's index date (a new snapshot, cheaply); retried while a reader holds
    the store."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with duckdb.connect(str(store)) as con:
                con.execute(f"UPDATE feature_snapshot SET index_date = index_date + {days}")
            return
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for(done: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.5)
