"""Against the monitor: later extracts of the trained home's own county
(`carerisk synth --later-of`), loaded into a copy of its store, snapshot, monitored against
the champions trained on the earlier extract. A clean next month is stable; each known drift
is flagged, with a reason naming what the drift changed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from evaluation.monitor import MonitorLimits, MonitorResult
from features.extent import snapshot_date
from features.home import Home
from features.outcomes import PRODUCT
from features.snapshot import write_snapshot
from features.store import load_extract
from synthetic.later import later_extract
from training.monitor_run import monitor_champions

pytestmark = pytest.mark.slow


def monitored(
    trained_home: Path, root: Path, drift: str | None
) -> tuple[dict[str, Any], dict[str, MonitorResult]]:
    """The next month's extract (with `drift`), loaded into a copy of the store and monitored."""
    source = Home(trained_home)
    root.mkdir(parents=True)
    layout = Home(root)
    manifest = later_extract(source.extract_dir, layout.extract_dir, 1, drift)  # type: ignore[arg-type]
    store = layout.store_path
    shutil.copy(source.store_path, store)
    report = load_extract(layout.extract_dir, store)
    assert report.ok and report.kind == "full" and report.totals()["rows_quarantined"] == 0
    day = snapshot_date(store)
    assert day is not None
    write_snapshot(store, day, PRODUCT)
    done = monitor_champions(
        store, source.default_tracking_uri, list(PRODUCT), MonitorLimits(), layout.reports_dir,
        log_to_run=False,
    )  # fmt: skip
    return manifest, {d.result.meta["outcome"]: d.result for d in done}


@pytest.fixture(scope="module")
def clean(
    trained_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], dict[str, MonitorResult]]:
    return monitored(trained_home, tmp_path_factory.mktemp("later") / "clean", None)


def test_a_clean_next_month_is_stable(
    clean: tuple[dict[str, Any], dict[str, MonitorResult]],
) -> None:
    manifest, results = clean
    assert manifest["drift"] is None and manifest["changes"]["gp_event"]["added"] > 0
    for outcome, result in results.items():
        assert result.verdict == "stable", (outcome, [r.text for r in result.reasons])
        assert result.exit_code == 0
        assert result.meta["snapshot_date"] == "2025-05-01"


@pytest.mark.parametrize(
    ("drift", "named"),
    [
        ("gp-system", "gp_system = {from_system}|gp_system = {to_system}"),
        ("new-provider", "(home_care_now)"),
        ("prevalence", "(days_since_last_fall)"),
    ],
)
def test_a_drifted_next_month_is_flagged(
    trained_home: Path, tmp_path: Path, drift: str, named: str
) -> None:
    manifest, results = monitored(trained_home, tmp_path / drift, drift)
    falls = results["falls"]
    assert falls.verdict in ("watch", "retrain") and falls.exit_code != 0
    expected = named.format(**manifest["drift"]).split("|")  # any of these
    texts = [r.text for r in falls.reasons]
    assert any(e in t for e in expected for t in texts), texts
