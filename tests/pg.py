"""A throwaway PostgreSQL cluster on loopback, and an MLflow tracking server on top of it.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is created and run
as an unprivileged system user (`postgres` from Debian's package, else `nobody`) through
`runuser`. The cluster lives in its own temp folder owned by that user, listens only on
127.0.0.1 on a free port, keeps its unix socket in that folder and trusts local connections.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from tests.live import child_env, free_port, wait_for_200

SUPERUSER = "carerisk"  # the cluster's superuser role (trust auth: no password)
RUN_AS = ("postgres", "nobody")  # unprivileged system users to run the cluster as, in order


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed here."""


def postgres_bin() -> Path:
    """The newest installed PostgreSQL bin folder (Debian layout, else pg_ctl on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable("no pg_ctl found; `make system-deps` installs Debian's postgresql")


def _major_version(pg_ctl: str) -> int:
    name = Path(pg_ctl).parents[1].name
    return int(name) if name.isdigit() else 0


def unprivileged_user() -> str | None:
    """The user to run postgres as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in RUN_AS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable(f"running as root and none of the users {RUN_AS} exists")


@dataclass
class PostgresCluster:
    """initdb + pg_ctl start in a temp folder; `stop()` removes everything."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="carerisk-pg-")))
    user: str | None = field(default_factory=unprivileged_user)
    bin_dir: Path = field(default_factory=postgres_bin)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        if self.user is not None:
            shutil.chown(self.root, self.user)
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                  "-l", str(self.log_path), "-o", options)  # fmt: skip
        return self

    def create_database(self, name: str) -> None:
        con = self.connect("postgres")
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()

    def connect(self, database: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database)

    def query(self, database: str, sql: str) -> list[tuple[object, ...]]:
        con = self.connect(database)
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            con.close()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster's folder."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        # pg_ctl start leaves the postmaster running: its output goes to the log, not our pipes
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=120, cwd=self.root,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{result.stdout}\n"
                               f"{self.log()}")  # fmt: skip


@dataclass
class MlflowServer:
    """`mlflow server` with a database backend and proxied artifacts, on a free loopback port."""

    backend_uri: str
    artifacts: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path, timeout: float = 180) -> MlflowServer:
        self.log_path = log_path
        command = [sys.executable, "-m", "mlflow", "server",
                   "--backend-store-uri", self.backend_uri,
                   "--artifacts-destination", str(self.artifacts),
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]  # fmt: skip
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, text=True, env=child_env(),
                start_new_session=True, cwd=self.artifacts.parent,
            )  # fmt: skip
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        assert self.process is not None
        wait_for_200(f"{self.url}/health", self.process, timeout, self.log)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
