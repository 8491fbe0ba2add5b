"""The monthly cycle as one stage: load a new extract (every row checked), snapshot, score
the cohorts into the scores history, monitor the champions, and optionally train challengers
and run the promotion gate.

Each step does nothing when its work is already done, so a second run of the same extract
changes nothing and says so:
- load: skipped when every file's SHA-256 equals the one the store's last load logged;
- snapshot: skipped when the last refresh of this extract wrote the snapshot now stored;
- scores history: written only when missing (the writer is idempotent itself);
- monitor: skipped when each champion's report for this snapshot is in the reports folder
  (its verdict is read back from the report's JSON);
- retrain: skipped for an outcome whose MLflow runs already hold a challenger trained on this
  extract (run tag `carerisk.refresh`), with its gate verdict (tag `carerisk.refresh_gate`).
The refreshes are logged in the store's `refresh_log`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from evaluation.monitor import EXIT_CODES, worst
from evaluation.report import report_stem
from features import store as feature_store
from features.extent import snapshot_date
from features.outcomes import Outcome
from features.store import ExtractKind
from models.registered import CHAMPION
from training.config import TrainingConfig
from training.evaluation_run import TruthFiles
from training.tracking import client_for, version_by_alias

REFRESH_TAG = "carerisk.refresh"
GATE_TAG = "carerisk.refresh_gate"
REFRESH_LOG_SQL = """CREATE TABLE IF NOT EXISTS refresh_log (
  finished_at TIMESTAMP, extract_dir VARCHAR, fingerprint VARCHAR, load_id BIGINT,
  snapshot_date DATE, verdict VARCHAR, changed BOOLEAN)"""
Say = Callable[[str], None]


@dataclass
class Step:
    """One step of a refresh: whether it changed anything, and what."""

    name: str
    changed: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.name, "changed": self.changed, "detail": self.detail, **self.data}


@dataclass
class RefreshResult:
    extract_dir: str
    fingerprint: str
    steps: list[Step]
    verdict: str | None  # the worst champion's; None when there is no champion to monitor
    snapshot_date: date | None

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict] if self.verdict else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "extract_dir": self.extract_dir,
            "fingerprint": self.fingerprint,
            "changed": self.changed,
            "snapshot_date": self.snapshot_date.isoformat() if self.snapshot_date else None,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class RefreshPlaces:
    """Where a refresh reads and writes (from the settings built at the entry point)."""

    store_path: Path
    tracking_uri: str
    artifact_root: Path
    reports_dir: Path
    scores_dir: Path  # the scores exports the service reads (features.scores_export)


@dataclass(frozen=True)
class RefreshOptions:
    outcomes: Sequence[Outcome]
    config: TrainingConfig
    objections: frozenset[str] = frozenset()
    kind: ExtractKind | None = None
    retrain: bool = False
    log_to_run: bool = True
    truth: Callable[[Path], TruthFiles | None] = lambda store: None


def refresh(
    extract_dir: Path, places: RefreshPlaces, options: RefreshOptions, say: Say | None = None
) -> RefreshResult:
    """Run the monthly cycle on one extract; each step skips work already done."""
    tell = say or (lambda text: None)
    extract_dir = Path(extract_dir)
    fingerprint = extract_fingerprint(extract_dir)
    steps = [load_step(extract_dir, places, options, fingerprint)]
    tell(steps[-1].detail)
    steps.append(snapshot_step(places, options, fingerprint, loaded=steps[0].changed))
    tell(steps[-1].detail)
    day = snapshot_date(places.store_path)
    steps += _look_back(places, options, tell)
    if options.retrain:
        for outcome in options.outcomes:
            steps.append(retrain_step(outcome, places, options, fingerprint))
            tell(steps[-1].detail)
        if any(s.data.get("gate") == "promoted" and s.changed for s in steps):
            steps += _look_back(places, options, tell)  # the new champions' turn
    verdict = next((s.data["verdict"] for s in reversed(steps) if s.name == "monitor"), None)
    result = RefreshResult(str(extract_dir), fingerprint, steps, verdict, day)
    _log_refresh(places.store_path, result, steps[0].data.get("load_id"))
    return result


def _look_back(places: RefreshPlaces, options: RefreshOptions, tell: Say) -> list[Step]:
    """Score and monitor the outcomes that have a champion."""
    outcomes = champion_outcomes(places.tracking_uri, options.outcomes)
    steps = [scores_step(places, options, outcomes), monitor_step(places, options, outcomes)]
    for step in steps:
        tell(step.detail)
    return steps


def champion_outcomes(tracking_uri: str, outcomes: Sequence[Outcome]) -> list[Outcome]:
    client = client_for(tracking_uri)
    return [o for o in outcomes if version_by_alias(client, o.model_name, CHAMPION) is not None]


# --- fingerprint and load ------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def extract_fingerprint(extract_dir: Path) -> str:
    """One digest of every contract file's SHA-256 (and the manifest's, when there is one)."""
    files = {
        name: file_sha256(path) for name, path in feature_store.find_files(extract_dir).items()
    }
    manifest = extract_dir / "manifest.json"
    if manifest.exists():
        files["manifest.json"] = file_sha256(manifest)
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _last_load(store_path: Path) -> tuple[int | None, dict[str, str]]:
    """The store's last load id and the SHA-256 of each file it read."""
    if not store_path.exists():
        return None, {}
    with feature_store.connect(store_path) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "load_log" not in tables:
            return None, {}
        rows = con.execute(
            "SELECT load_id, table_name, source_sha256 FROM load_log "
            "WHERE load_id = (SELECT max(load_id) FROM load_log)"
        ).fetchall()
    return (rows[0][0] if rows else None), {r[1]: r[2] for r in rows}


def load_step(
    extract_dir: Path, places: RefreshPlaces, options: RefreshOptions, fingerprint: str
) -> Step:
    files = feature_store.find_files(extract_dir)
    load_id, logged = _last_load(places.store_path)
    if logged and all(logged.get(n) == file_sha256(p) for n, p in files.items()):
        return Step("load", False, f"load: unchanged (this extract is load {load_id})",
                    {"load_id": load_id})  # fmt: skip
    places.store_path.parent.mkdir(parents=True, exist_ok=True)
    report = feature_store.load_extract(
        extract_dir, places.store_path, kind=options.kind, objections=options.objections
    )
    if not report.ok:
        raise RefreshError(
            f"the load of {extract_dir} does not balance: rows read do not equal rows loaded + "
            "updated + unchanged + quarantined"
        )
    totals = report.totals()
    detail = (
        f"load {report.load_id} ({report.kind or 'first'} extract to {report.extract_date}): "
        f"{totals['rows_loaded']:,} new, {totals['rows_updated']:,} updated, "
        f"{totals['rows_retired']:,} retired, {totals['rows_quarantined']:,} quarantined, "
        f"{totals['rows_unchanged']:,} unchanged"
    )
    return Step("load", True, detail, {"load_id": report.load_id, "totals": totals})


class RefreshError(RuntimeError):
    """A refresh cannot go on (the message says why)."""


# --- snapshot, scores, monitor -------------------------------------------------------------


def snapshot_step(
    places: RefreshPlaces, options: RefreshOptions, fingerprint: str, loaded: bool
) -> Step:
    from features.snapshot import write_snapshot

    day = snapshot_date(places.store_path)
    if day is None:
        raise RefreshError(f"the store {places.store_path} holds no dated events to snapshot")
    if not loaded and _snapshot_done(places.store_path, fingerprint, day):
        return Step("snapshot", False, f"snapshot: unchanged (at {day})", {"date": str(day)})
    write_snapshot(places.store_path, day, options.outcomes)
    _log_snapshot(places.store_path, fingerprint, day)
    return Step("snapshot", True, f"snapshot: written at {day}", {"date": str(day)})


def _snapshot_done(store_path: Path, fingerprint: str, day: date) -> bool:
    with feature_store.connect(store_path) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "refresh_log" not in tables or "feature_snapshot" not in tables:
            return False
        row = con.execute(
            "SELECT fingerprint, snapshot_date FROM refresh_log ORDER BY finished_at DESC LIMIT 1"
        ).fetchone()
    return row is not None and row[0] == fingerprint and row[1] == day


def _log_snapshot(store_path: Path, fingerprint: str, day: date) -> None:
    """Note the snapshot at once, so a refresh that stops later does not write it again."""
    _write_log(store_path, None, fingerprint, None, day, None, True)


def _write_log(
    store_path: Path,
    extract_dir: str | None,
    fingerprint: str,
    load_id: int | None,
    day: date | None,
    verdict: str | None,
    changed: bool,
) -> None:
    with feature_store.connect(store_path, read_only=False) as con:
        con.execute(REFRESH_LOG_SQL)
        con.execute(
            "INSERT INTO refresh_log VALUES (?, ?, ?, ?, ?, ?, ?)",
            [datetime.now(UTC).replace(tzinfo=None), extract_dir, fingerprint, load_id, day,
             verdict, changed],
        )  # fmt: skip


def _log_refresh(store_path: Path, result: RefreshResult, load_id: int | None) -> None:
    if result.changed:
        _write_log(store_path, result.extract_dir, result.fingerprint, load_id,
                   result.snapshot_date, result.verdict, True)  # fmt: skip


def scores_step(places: RefreshPlaces, options: RefreshOptions, outcomes: list[Outcome]) -> Step:
    from features.snapshot import read_snapshot_people, snapshot_fingerprint
    from models.score_all import score_snapshot, store_and_export
    from training.champions import registry_champions

    if not outcomes:
        return Step("scores", False, "scores history: no champion to score with yet")
    champions = registry_champions(places.tracking_uri, outcomes)
    fingerprint = snapshot_fingerprint(places.store_path)
    snapshot = read_snapshot_people(places.store_path)
    scores = score_snapshot(snapshot, champions, options.objections)
    written = store_and_export(
        places.store_path, places.scores_dir, scores, champions, options.objections, fingerprint
    )
    new = [w for w in written if not w.unchanged]
    parts = [f"{w.outcome} {w.model_name} v{w.model_version}: {w.rows:,} people" for w in new]
    detail = "scores history: " + ("; ".join(parts) if new else "unchanged (already stored)")
    return Step("scores", bool(new), detail, {"written": [w.to_dict() for w in written]})


def _report_paths(places: RefreshPlaces, outcomes: Sequence[Outcome]) -> list[Path]:
    """Each champion's monitor report JSON for the stored snapshot."""
    day = snapshot_date(places.store_path)
    client = client_for(places.tracking_uri)
    paths = []
    for outcome in outcomes:
        version = version_by_alias(client, outcome.model_name, CHAMPION)
        if version is None:
            raise RefreshError(f"{outcome.model_name} lost its champion during the refresh")
        stem = f"{report_stem(outcome.model_name, version.version)}-monitor-{day}"
        paths.append(places.reports_dir / f"{stem}.json")
    return paths


def monitor_step(places: RefreshPlaces, options: RefreshOptions, outcomes: list[Outcome]) -> Step:
    from training.monitor_run import monitor_champions

    if not outcomes:
        return Step("monitor", False, "monitor: no champion to monitor yet", {"verdict": None})
    paths = _report_paths(places, outcomes)
    if all(p.exists() for p in paths):
        verdicts = [json.loads(p.read_text())["verdict"] for p in paths]
        verdict = worst(verdicts)
        return Step("monitor", False, f"monitor: unchanged (verdict {verdict}, reports kept)",
                    {"verdict": verdict, "reports": [str(p) for p in paths]})  # fmt: skip
    done = monitor_champions(
        places.store_path,
        places.tracking_uri,
        outcomes,
        options.config.monitor.limits(),
        places.reports_dir,
        objections=options.objections,
        log_to_run=options.log_to_run,
    )
    verdict = worst([d.result.verdict for d in done])
    each = "; ".join(f"{d.result.meta['outcome']} {d.result.verdict}" for d in done)
    return Step("monitor", True, f"monitor: verdict {verdict} ({each})",
                {"verdict": verdict, "champions": [d.summary() for d in done]})  # fmt: skip


# --- retrain and gate ----------------------------------------------------------------------


def retrain_step(
    outcome: Outcome, places: RefreshPlaces, options: RefreshOptions, fingerprint: str
) -> Step:
    """A challenger trained on this extract and gated, once."""
    from training.pipeline import train_outcome, uncovered
    from training.promotion import promote

    name = f"retrain {outcome.cli_name}"
    why = uncovered(places.store_path, outcome)
    if why is not None:  # the source lacks a table its label needs: said, never trained
        return Step(name, False, f"{name}: not trained: {why}", {"not_trained": why})
    client = client_for(places.tracking_uri)
    done = _refresh_run(client, outcome, fingerprint)
    if done is not None and GATE_TAG in done.data.tags:
        gate = done.data.tags[GATE_TAG]
        return Step(name, False, f"{name}: unchanged (run {done.info.run_id}, gate {gate})",
                    {"run_id": done.info.run_id, "gate": gate})  # fmt: skip
    run_id = done.info.run_id if done is not None else None
    if run_id is None:
        trained = train_outcome(
            places.store_path, outcome, config=options.config, tracking_uri=places.tracking_uri,
            artifact_root=places.artifact_root, objections=options.objections,
            reports_dir=places.reports_dir, truth=options.truth(places.store_path),
        )  # fmt: skip
        run_id = trained.run_id
        client.set_tag(run_id, REFRESH_TAG, fingerprint)
    verdict = promote(outcome, places.tracking_uri, gate=options.config.gate,
                      seed=options.config.seed)  # fmt: skip
    gate = "promoted" if verdict.passed else "refused"
    client.set_tag(run_id, GATE_TAG, gate)
    why = "" if verdict.passed else ": " + "; ".join(verdict.reasons)
    return Step(name, True, f"{name}: challenger from run {run_id}, gate {gate}{why}",
                {"run_id": run_id, "gate": gate, "reasons": list(verdict.reasons)})  # fmt: skip


def _refresh_run(client: Any, outcome: Outcome, fingerprint: str) -> Any:
    """The outcome's registered run already trained on this extract by a refresh, if any."""
    for version in client.search_model_versions(f"name = '{outcome.model_name}'"):
        run = client.get_run(version.run_id)
        if run.data.tags.get(REFRESH_TAG) == fingerprint:
            return run
    return None
