"""A real carerisk home and a real served instance, for end-to-end tests.

`build_home` runs `carerisk demo --no-serve` on a small synthetic county (synth, load, features,
train and evaluate both outcomes, promote, registers). `LiveService` starts `carerisk serve`
(the real BentoML server) on a free loopback port against that home.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx

from features.home import Home
from features.outcomes import PRODUCT, Outcome
from serving.audit import AuditLog, AuditRecord
from training.home_check import move_records

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / "tests" / "training-small.toml"
ROLES = ("gp", "fire", "analyst", "admin", "monitor")


def carerisk(
    home: Path, *args: str, timeout: float = 900, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `carerisk` command against `home` (with `env` added to the environment)."""
    command = [sys.executable, "-m", "carerisk", "--home", str(home), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=child_env(env)
    )


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true", DO_NOT_TRACK="1",
        PYTHONWARNINGS="ignore",
    )  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra or {})
    return env


def build_home(home: Path, people: int = 4000, seed: int = 11) -> Path:
    result = carerisk(
        home, "demo", "--no-serve", "--people", str(people), "--seed", str(seed),
        "--end", "2025-03-31", "--config", str(TEST_CONFIG),
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return home


BUILT = ".built"  # written last: a shared home without it was never finished


def shared_home(shared: Path, own: Path) -> Path:
    """A private copy of the trained home that one process per test run builds at `shared`:
    the first xdist worker to get the lock builds it, the others wait and copy it. Each worker
    serves and writes only its own copy, so audit counts never mix."""
    with _locked(shared.with_name(shared.name + ".lock")):
        if not (shared / BUILT).exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir(mode=0o700)
            build_home(shared)
            (shared / BUILT).touch()
    return copy_home(shared, own)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def copy_home(source: Path, home: Path, *left_out: str) -> Path:
    """A copy of `source` at `home` (without server logs or the `left_out` patterns) that names
    itself: the product's own move (training.home_check) points the paths its tracking store
    and load log record at the copy, so nothing it writes or reads later reaches back into
    `source`."""
    ignore = shutil.ignore_patterns("server-*.log", BUILT, *left_out)
    shutil.copytree(source, home, ignore=ignore)
    move_records(Home(Path(home).resolve()), Path(source).resolve())
    return home


def snapshot_people(home: Path, outcomes: Iterable[Outcome] = PRODUCT) -> dict[str, list[str]]:
    """Person ids in each outcome's cohort (the snapshot's flags), oldest first."""
    people = {}
    with duckdb.connect(str(Home(home).store_path), read_only=True) as con:
        for outcome in outcomes:
            rows = con.execute(
                f"SELECT person_id FROM feature_snapshot WHERE {outcome.cohort_column} "
                "ORDER BY age_years DESC, person_id"
            ).fetchall()
            people[outcome.name] = [row[0] for row in rows]
    return people


def keyed_since(log: AuditLog, before: int) -> list[AuditRecord]:
    """The audit records after seq `before` of calls made with a valid key (or from the command
    line). Keyless refusals (role "none") are audited in groups up to a second after their
    answers, so a count of records can include earlier tests' refusals: they are left out."""
    return [r for r in log.since(before) if r.role != "none"]


def owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveService:
    home: Path
    port: int = field(default_factory=free_port)
    keys: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the server's environment

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_keys(self) -> None:
        from serving.keys import KeyStore

        store = KeyStore.in_home(self.home)
        for role in ROLES:
            # the GP key acts for every practice; tests/ops/test_security.py adds scoped ones
            _, self.keys[role] = store.add(f"Test {role} org", role, all_practices=role == "gp")

    def start(self, *extra: str, timeout: float = 180) -> LiveService:
        self.log_path = self.home / f"server-{self.port}.log"
        # owner-only, like everything else in a home (the server's log names no people)
        log = open(self.log_path, "w", opener=owner_only)  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "carerisk", "--home", str(self.home), "serve",
                   "--port", str(self.port), *extra]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True, env=child_env(self.env),
            start_new_session=True,
        )  # fmt: skip
        self.wait_ready(timeout)
        return self

    @contextlib.contextmanager
    def running(self, *extra: str) -> Iterator[LiveService]:
        """The service with a key per role, started (with `extra` arguments), stopped after."""
        self.add_keys()
        self.start(*extra)
        try:
            yield self
        finally:
            self.stop()

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        wait_for_200(f"{self.url}/readyz", self.process, timeout, self.log)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # BentoML's workers run in process groups of their own: a SIGKILL of the group alone
        # leaves them running, orphaned, so they are found first and sent the signal too.
        family = descendants(self.process.pid)
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if sig == signal.SIGKILL else sig)

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_for_200(
    url: str,
    process: subprocess.Popen[Any],
    timeout: float,
    log: Callable[[], str] = lambda: "",
) -> None:
    """Poll `url` until it answers 200; fail at once, with the log, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited {process.returncode}:\n{log()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s:\n{log()}")
