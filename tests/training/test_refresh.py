"""`carerisk refresh EXTRACT` end to end on a fresh home and a small county
(3,000 people): the first extract trained and gated, the same extract again doing nothing,
the next month's extract loaded, scored and monitored, and that again doing nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from features.home import Home
from synthetic import CountyConfig, generate
from synthetic.later import later_extract
from tests.live import TEST_CONFIG, carerisk

pytestmark = pytest.mark.slow


def refresh(home: Path, extract: Path, *more: str) -> dict[str, Any]:
    done = carerisk(
        home, "refresh", str(extract), "--config", str(TEST_CONFIG), "--json", "--no-log", *more
    )
    assert done.returncode in (0, 3, 4), done.stdout[-2000:] + done.stderr[-3000:]
    payload: dict[str, Any] = json.loads(done.stdout)
    assert payload["exit_code"] == done.returncode
    return payload


def steps(payload: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in payload["steps"] if s["step"] == name]


def test_the_monthly_cycle_end_to_end(tmp_path: Path) -> None:
    county, home = tmp_path / "m0", tmp_path / "home"
    generate(CountyConfig(people=3_000, seed=5), county)
    first = refresh(home, county, "--retrain")
    assert first["changed"] and first["snapshot_date"] == "2025-04-01"
    assert steps(first, "load")[0]["changed"] and steps(first, "snapshot")[0]["changed"]
    assert steps(first, "load")[0]["totals"]["rows_retired"] == 0
    assert steps(first, "monitor")[0]["detail"] == "monitor: no champion to monitor yet"
    gates = {s["step"]: s["gate"] for s in first["steps"] if s["step"].startswith("retrain")}
    assert set(gates) == {"retrain falls", "retrain complex-dependency"}
    assert set(gates.values()) <= {"promoted", "refused"}
    if "promoted" in gates.values():  # the new champions scored and monitored at once
        assert [s["changed"] for s in steps(first, "monitor")] == [False, True]
        assert first["verdict"] in ("stable", "watch", "retrain")

    again = refresh(home, county, "--retrain")
    assert not again["changed"], [s["detail"] for s in again["steps"]]
    assert again["verdict"] == first["verdict"]
    assert {s["step"]: s["gate"] for s in again["steps"] if "gate" in s} == gates

    later = tmp_path / "m1"
    manifest = later_extract(county, later, 1)
    month = refresh(home, later)
    load = steps(month, "load")[0]
    changes = manifest["changes"].values()
    assert load["changed"] and load["load_id"] == 2
    assert load["totals"]["rows_loaded"] == sum(c["added"] for c in changes)
    assert load["totals"]["rows_updated"] == sum(c["corrected"] for c in changes)
    assert load["totals"]["rows_retired"] == sum(
        c["fell_off"] + c["deleted_in_error"] for c in changes
    )
    assert month["snapshot_date"] == "2025-05-01" and steps(month, "snapshot")[0]["changed"]
    if "promoted" in gates.values():
        assert steps(month, "scores")[0]["changed"] and steps(month, "monitor")[0]["changed"]
        # the service's scores exports of the new snapshot are written with the history
        exports = {p.name.split("-2025-05-01-")[0] for p in Home(home).scores_dir.glob("*.duckdb")}
        assert {"scores-falls", "scores-complex_dependency"} <= exports, exports
        assert month["verdict"] == "stable" and month["exit_code"] == 0

    quiet = carerisk(home, "refresh", str(later), "--config", str(TEST_CONFIG), "--no-log")
    assert quiet.returncode == month["exit_code"], quiet.stderr[-2000:]
    assert "nothing new: this extract was already refreshed" in quiet.stderr
    assert "load: unchanged (this extract is load 2)" in quiet.stderr


def test_retrain_of_an_outcome_the_source_cannot_label_is_a_step_not_a_failure(
    tmp_path: Path,
) -> None:
    """A store whose source lacks a table the label needs: the step says so, trains nothing."""
    from features.outcomes import COMPLEX_DEPENDENCY
    from features.store import load_extract
    from tests.features.test_coverage import block, write_covered
    from training.config import TrainingConfig
    from training.refresh import RefreshOptions, RefreshPlaces, retrain_step

    store = tmp_path / "store.duckdb"
    load_extract(write_covered(tmp_path / "omop", block()), store)
    places = RefreshPlaces(
        store, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "a", tmp_path / "r", tmp_path / "s"
    )
    options = RefreshOptions((COMPLEX_DEPENDENCY,), TrainingConfig.load())
    step = retrain_step(COMPLEX_DEPENDENCY, places, options, "fingerprint")
    assert not step.changed
    assert step.detail.startswith("retrain complex-dependency: not trained: complex dependency")
    assert "OMOP CDM holds no adult social care" in step.to_dict()["not_trained"]
    assert not (tmp_path / "mlflow.db").exists()
