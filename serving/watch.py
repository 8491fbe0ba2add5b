"""When the service reloads: asked (POST /v1/admin/reload), or on seeing a new champion or a new
snapshot (`carerisk serve --watch-seconds N`).

Each BentoML worker holds its own state, so each reloads itself. `Reloads` is one worker's
coordinator: one reload at a time, what the served state was built from (`Marks`: the registry's
champion versions and a fingerprint of the snapshot table) and the home's generation file. A
reload asked of one worker bumps the generation file; every worker's watcher reads it every
`follow_seconds` and follows. With `poll_seconds` set, the watcher also compares the marks every
`poll_seconds` and reloads when they changed; a reload refused for some marks is not tried again
until they change again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.outcomes import Outcome
from features.snapshot import snapshot_fingerprint
from models.registered import CHAMPION
from serving.config import ServingConfig
from serving.swap import ReloadBusy, Reloaded, ReloadRefused, ScorerHolder, reason_of, swap_in

log = logging.getLogger("carerisk.serving")

Versions = tuple[tuple[str, str], ...]  # (registered model, champion version) per outcome


@dataclass(frozen=True)
class Marks:
    """What a state is built from: each champion's registry version and the snapshot's
    fingerprint (index date, rows and a hash of every row)."""

    champions: Versions
    snapshot: str


def champion_versions(client: Any, outcomes: Sequence[Outcome]) -> Versions:
    """(registered model, champion version) per outcome; "none" where it has no champion (or
    the registry did not answer)."""
    from mlflow.exceptions import MlflowException

    found = []
    for outcome in outcomes:
        try:
            version = str(client.get_model_version_by_alias(outcome.model_name, CHAMPION).version)
        except MlflowException:
            version = "none"
        found.append((outcome.model_name, version))
    return tuple(found)


def read_marks(client: Any, config: ServingConfig, outcomes: Sequence[Outcome]) -> Marks:
    """The marks now; `client` is an MlflowClient of the config's tracking store."""
    return Marks(
        champion_versions(client, outcomes), snapshot_fingerprint(config.layout.store_path)
    )


def generation_path(config: ServingConfig) -> Path:
    return config.layout.serving_generation


def read_generation(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def bump_generation(path: Path) -> str:
    """Write a new generation (replacing the file in one step); returns it."""
    value = f"{time.time_ns()}-{os.getpid()}"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")
    tmp.replace(path)
    return value


class Reloads:
    """One worker's reloads: one at a time, with what the served state was built from."""

    def __init__(
        self,
        holder: ScorerHolder,
        config: ServingConfig,
        outcomes: Sequence[Outcome],
        *,
        frozen: bool = False,
    ) -> None:
        self.holder, self.config, self.outcomes, self.frozen = holder, config, outcomes, frozen
        self._lock = threading.Lock()
        self._client: Any = None  # an MlflowClient, made once
        self.marks: Marks | None = self._marks_or_none()
        self.refused: Marks | None = None  # marks a reload was refused for
        self.generation = read_generation(generation_path(config))

    def reload(self, *, announce: bool = False) -> Reloaded:
        """Build and swap in a new state (see serving/swap.py); with `announce`, bump the
        generation file so the other workers follow. Raises ReloadBusy when one is under way,
        ReloadRefused (the old state serving) when the new one is unusable."""
        if not self._lock.acquire(blocking=False):
            raise ReloadBusy("a reload is already under way in this worker; try again shortly")
        try:
            marks = self._marks_or_none()
            try:
                reloaded = swap_in(self.holder, self.config, self.outcomes, frozen=self.frozen)
            except ReloadRefused:
                self.refused = marks
                raise
            self.marks, self.refused = marks, None
            if announce:
                self.generation = bump_generation(generation_path(self.config))
            return reloaded
        finally:
            self._lock.release()

    def check(self, *, poll: bool) -> Reloaded | None:
        """Reload when another worker asked for it (the generation file changed) or, with
        `poll`, when the champions or the snapshot changed; None when nothing did."""
        generation = read_generation(generation_path(self.config))
        if generation != self.generation:
            self.generation = generation
            return self._quietly("another worker reloaded")
        if not poll or not self._changed():
            return None
        return self._quietly("the champions or the snapshot changed")

    def _changed(self) -> bool:
        marks = self._marks_or_none()
        return marks is not None and marks not in (self.marks, self.refused)

    def _quietly(self, why: str) -> Reloaded | None:
        log.info("reloading: %s", why)
        try:
            return self.reload()
        except ReloadRefused as refused:  # said in the log by swap_in; the old state serves
            log.warning("reload (%s) refused: %s", why, refused)
            return None

    def _marks_or_none(self) -> Marks | None:
        try:
            if self._client is None:
                from mlflow import MlflowClient

                uri = self.config.tracking_uri
                self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            return read_marks(self._client, self.config, self.outcomes)
        except Exception as error:  # noqa: BLE001 - the store is being written, the server down
            log.warning("cannot read the champions' versions or the snapshot: %s",
                        reason_of(error))  # fmt: skip
            return None


def watch(reloads: Reloads, stop: threading.Event) -> threading.Thread:
    """Start this worker's watcher: the generation file every `reload_follow_seconds`, the
    marks every `reload_poll_seconds` (never when 0)."""
    config = reloads.config
    thread = threading.Thread(
        target=_watch,
        args=(reloads, stop, config.reload_follow_seconds, config.reload_poll_seconds),
        name="carerisk-watch",
        daemon=True,
    )
    thread.start()
    return thread


def _watch(reloads: Reloads, stop: threading.Event, follow: float, poll: float) -> None:
    last_poll = time.monotonic()
    while not stop.wait(follow):
        due = poll > 0 and time.monotonic() - last_poll >= poll
        if due:
            last_poll = time.monotonic()
        try:
            reloads.check(poll=due)
        except Exception as error:  # noqa: BLE001 - the watcher must outlive any fault
            log.error("watcher: %s", reason_of(error))


def served_marks(reloads: Reloads | None) -> dict[str, Any]:
    """The marks a worker's state was built from, as plain data (for logs and tests)."""
    if reloads is None or reloads.marks is None:
        return {}
    return {"champions": dict(reloads.marks.champions), "snapshot": reloads.marks.snapshot}
