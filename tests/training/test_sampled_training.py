"""End to end: `carerisk train --sample-negatives` on a copy of the trained
4,000-person home. The sampled model is calibrated on the validation people and its MLflow run
and bundle say that it was fitted on a sample, and on how many rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.home import Home
from tests import live
from training.config import TrainingConfig
from training.tracking import PREDICTIONS_ARTIFACT
from training.validation_metrics import observed_expected

pytestmark = pytest.mark.slow
FRACTION = 0.3


def _train(home: Path, *extra: str) -> dict[str, Any]:
    result = live.carerisk(
        home, "train", "--outcome", "falls", "--config", str(live.TEST_CONFIG),
        "--no-report", "--json", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{") :])
    return out


@pytest.fixture(scope="module")
def runs(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = live.copy_home(trained_home, tmp_path_factory.mktemp("sampled") / "home")
    return {
        "home": home,
        "sampled": _train(home, "--sample-negatives", str(FRACTION)),
        "full": _train(home),
    }


def _client(runs: dict[str, Any]) -> MlflowClient:
    return MlflowClient(tracking_uri=Home(runs["home"]).default_tracking_uri)


def _predictions(runs: dict[str, Any], which: str) -> pd.DataFrame:
    path = _client(runs).download_artifacts(runs[which]["run_id"], PREDICTIONS_ARTIFACT)
    return pd.read_parquet(path)


def test_sampled_training_is_calibrated_on_the_validation_people(runs: dict[str, Any]) -> None:
    sampled, full = _predictions(runs, "sampled"), _predictions(runs, "full")
    assert sampled["person_id"].tolist() == full["person_id"].tolist()  # the same people, whole
    y = sampled["y"].to_numpy()
    ratio, low, high = observed_expected(y, sampled["p"].to_numpy(), 0.95)
    rule = TrainingConfig.load(live.TEST_CONFIG).gate.observed_expected_rule()
    assert rule.refusal(ratio, low, high) is None, (ratio, low, high)
    # a few dozen events: judged against the full model's level on the same people as well
    assert sampled["p"].mean() == pytest.approx(full["p"].mean(), rel=0.2)
    # the baseline is never recalibrated: only its weights keep its level the full one's
    assert sampled["p_baseline"].mean() == pytest.approx(full["p_baseline"].mean(), rel=0.2)
    model, whole = runs["sampled"]["metrics"]["model"], runs["full"]["metrics"]["model"]
    assert model["auroc"] == pytest.approx(whole["auroc"], abs=0.05)


def test_the_run_records_the_sample(runs: dict[str, Any]) -> None:
    client = _client(runs)
    sampled = client.get_run(runs["sampled"]["run_id"]).data.params
    full = client.get_run(runs["full"]["run_id"]).data.params
    assert float(sampled["sampling.negative_fraction"]) == FRACTION
    assert not any(k.startswith("sampling.") for k in full)
    rows = int(sampled["sampling.training_rows"])
    fitted_full = int(full["split.boosting"]) + int(full["split.early_stopping"])
    fitted_sampled = int(sampled["split.boosting"]) + int(sampled["split.early_stopping"])
    assert fitted_sampled < 0.6 * fitted_full
    represented = int(sampled["sampling.rows_represented"])
    assert rows < represented
    assert "weighted sample" in sampled["sampling.note"]
    # the calibration people are whole: as many calibration rows as in the full run
    assert sampled["split.calibration"] == full["split.calibration"]
    folder = client.download_artifacts(runs["sampled"]["run_id"], "bundle")
    metadata = json.loads((Path(folder) / "bundle.json").read_text())["metadata"]
    assert metadata["sampling"]["negative_fraction"] == FRACTION
    sizes = metadata["sampling"]["by_index_date"]
    assert sum(v["rows"] for v in sizes.values()) == rows
    assert np.isclose(sum(v["represented"] for v in sizes.values()), represented, atol=1)
