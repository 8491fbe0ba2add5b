"""Tracking, registry and the promotion gate on a real MLflow sqlite store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.home import Home
from features.outcomes import FALLS
from models.registered import BUNDLE_ARTIFACT
from tests.models.frames import make_frame, small_features, split_latest
from training.config import DEFAULT_CONFIG_PATH, TrainingConfig
from training.fit import TrainedModels, fit
from training.pipeline import log_and_register
from training.promotion import (
    GateContext,
    baseline_check,
    calibration_check,
    log_checks,
    observed_expected_check,
    promote,
)
from training.tracking import (
    data_fingerprint,
    frame_fingerprint,
    log_training_run,
    register_run,
)
from training.validation_metrics import paired_bootstrap_auroc_difference

pytestmark = pytest.mark.slow
NAME = FALLS.model_name


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    home = Home(tmp_path_factory.mktemp("mlflow"))
    return home.default_tracking_uri, home.artifacts_dir


@pytest.fixture(scope="module")
def config(config: TrainingConfig) -> TrainingConfig:
    """Wider calibration limits: 2,000 training rows at one earlier date give a noisy slope and
    a level that moves between the dates (these tests are about the registry's moves; the
    checks themselves are tested below on predictions made for them)."""
    wide = {
        "calibration_slope_range": (0.5, 1.6),
        "calibration_slope_interval_range": (0.5, 1.6),
        "observed_expected_range": (0.6, 1.6),
        "observed_expected_interval_range": (0.85, 1.15),
    }
    gate = config.gate.model_copy(update=wide)
    return config.model_copy(update={"gate": gate})


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_latest(make_frame(people=20_000, seed=3))


def _train(
    data: tuple[pd.DataFrame, pd.DataFrame],
    config: TrainingConfig,
    store: tuple[str, Path],
    shuffle: bool = False,
) -> str:
    train, validation = data
    if shuffle:
        train = train.assign(label=train["label"].sample(frac=1, random_state=1).to_numpy())
    trained = fit(train, validation, small_features(), FALLS, config)
    result = log_and_register(
        trained,
        validation,
        outcome=FALLS,
        config=config,
        tracking_uri=store[0],
        artifact_root=store[1],
        fingerprint=data_fingerprint(frame_fingerprint(train), small_features()),
    )
    return result.version


def _alias(client: MlflowClient, alias: str) -> str:
    return str(client.get_model_version_by_alias(NAME, alias).version)


def test_gate_promotes_first_refuses_degraded_then_promotes_good(
    data: tuple[pd.DataFrame, pd.DataFrame], config: TrainingConfig, store: tuple[str, Path]
) -> None:
    client = MlflowClient(tracking_uri=store[0], registry_uri=store[0])
    first = _train(data, config, store)
    verdict = promote(FALLS, store[0], gate=config.gate)
    assert verdict.passed and verdict.promoted and verdict.champion_version is None
    assert _alias(client, "champion") == first == _alias(client, "challenger")

    degraded = _train(data, config, store, shuffle=True)
    assert _alias(client, "challenger") == degraded != first
    verdict = promote(FALLS, store[0], gate=config.gate)
    assert not verdict.passed and not verdict.promoted
    assert any(r.startswith("AUROC vs champion") for r in verdict.reasons)
    assert _alias(client, "champion") == first
    tags = client.get_model_version(NAME, str(degraded)).tags
    assert tags["gate_verdict"] == "refuse" and "AUROC" in tags["gate_reasons"]
    assert "refused" in client.get_model_version(NAME, str(degraded)).description

    good = _train(data, config.model_copy(update={"seed": 7}), store)
    verdict = promote(FALLS, store[0], gate=config.gate)
    assert verdict.passed, verdict.reasons
    assert verdict.champion_version == first
    assert _alias(client, "champion") == good == _alias(client, "challenger")
    version = client.get_model_version(NAME, good)
    assert version.tags["gate_verdict"] == "pass"
    assert len(version.tags["data_fingerprint"]) == 64
    assert len(version.tags["feature_list_hash"]) == 64


def test_run_logs_artifacts_params_and_metrics(
    data: tuple[pd.DataFrame, pd.DataFrame], config: TrainingConfig, store: tuple[str, Path]
) -> None:
    client = MlflowClient(tracking_uri=store[0], registry_uri=store[0])
    version = client.get_model_version_by_alias(NAME, "challenger")
    run = client.get_run(version.run_id)
    assert run.data.params["lightgbm.deterministic"] == "True"
    assert 0.6 < run.data.metrics["model.auroc"] < 0.95
    assert "baseline.calibration_slope" in run.data.metrics
    assert run.data.tags["git_commit"]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {BUNDLE_ARTIFACT, "baseline", "validation", "features.json", "shap_summary.png"} <= top
    bundle_files = {a.path for a in client.list_artifacts(run.info.run_id, BUNDLE_ARTIFACT)}
    assert "bundle/model.txt" in bundle_files and "bundle/bundle.json" in bundle_files
    assert str(store[1]) in run.info.artifact_uri


def test_run_that_raises_before_registration_leaves_no_version(
    data: tuple[pd.DataFrame, pd.DataFrame], config: TrainingConfig, store: tuple[str, Path]
) -> None:
    client = MlflowClient(tracking_uri=store[0], registry_uri=store[0])
    before = len(client.search_model_versions(f"name='{NAME}'"))
    train, validation = data
    trained = fit(train, validation, small_features(), FALLS, config)

    def killed(run_id: str) -> None:
        raise KeyboardInterrupt("killed half way")

    with pytest.raises(KeyboardInterrupt):
        log_training_run(
            trained,
            validation,
            outcome=FALLS,
            config=config,
            tracking_uri=store[0],
            artifact_root=store[1],
            fingerprint="x",
            inside_run=killed,
        )
    assert len(client.search_model_versions(f"name='{NAME}'")) == before
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id])
    assert runs[0].info.status in {"FAILED", "KILLED"}


def test_logged_and_extra_checks_can_refuse(
    data: tuple[pd.DataFrame, pd.DataFrame], config: TrainingConfig, store: tuple[str, Path]
) -> None:
    client = MlflowClient(tracking_uri=store[0], registry_uri=store[0])
    champion = _alias(client, "champion")
    train, validation = data
    trained: TrainedModels = fit(
        train, validation, small_features(), FALLS, config.model_copy(update={"seed": 7})
    )

    def subgroup_checks(run_id: str) -> None:
        log_checks(client, run_id, [("subgroup AUROC 85+", False, "0.55 below 0.6")], "sub.json")

    logged = log_training_run(
        trained,
        validation,
        outcome=FALLS,
        config=config,
        tracking_uri=store[0],
        artifact_root=store[1],
        fingerprint="y",
        inside_run=subgroup_checks,
    )
    register_run(logged, FALLS, store[0])
    seen: list[int] = []

    def extra(context: GateContext) -> tuple[str, bool, str]:
        seen.append(len(context.challenger))
        return "extra", True, "fine"

    checks: list[Callable[[GateContext], tuple[str, bool, str]]] = [extra]
    verdict = promote(FALLS, store[0], gate=config.gate, extra_checks=checks)
    assert not verdict.passed
    assert verdict.reasons == ["subgroup AUROC 85+: 0.55 below 0.6"]
    assert seen == [len(trained.validation_predictions)]
    assert _alias(client, "champion") == champion


def _predictions(n: int, seed: int, scale: float = 1.0, noise: float = 0.0) -> pd.DataFrame:
    """Validation predictions whose outcomes follow `p`; the served `p` is `scale` times it,
    and the baseline's is `p` blurred by `noise` on the log-odds scale."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.5, 1.2, n)
    p = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < p).astype(int)
    blurred = 1 / (1 + np.exp(-(z + rng.normal(0, noise, n))))
    return pd.DataFrame({"y": y, "p": np.clip(scale * p, 0, 1), "p_baseline": blurred})


SHIPPED = TrainingConfig.load(DEFAULT_CONFIG_PATH).gate


@pytest.mark.parametrize(
    ("ratio", "low", "high", "passes"),
    [(1.23, 1.005, 1.49, False), (1.10, 1.03, 1.17, True), (0.87, 0.73, 1.03, True),
     (1.05, 1.11, 1.20, False), (0.84, 0.80, 0.95, False)],
)  # fmt: skip
def test_the_observed_expected_rule_on_the_worked_examples(
    ratio: float, low: float, high: float, passes: bool
) -> None:
    """The shipped rule: refused when the point lies outside 0.85-1.18 or the whole 95%
    interval outside 0.9-1.1."""
    assert (SHIPPED.observed_expected_rule().refusal(ratio, low, high) is None) is passes


@pytest.mark.parametrize(
    ("slope", "low", "high", "passes"),
    [(1.117, 0.95, 1.30, True), (1.21, 1.0, 1.4, False), (0.85, 0.82, 0.88, False),
     (0.82, 0.70, 0.95, True)],
)  # fmt: skip
def test_the_slope_rule(slope: float, low: float, high: float, passes: bool) -> None:
    """The shipped rule: refused when the point lies outside 0.8-1.2 or the whole 95% interval
    outside 0.9-1.1."""
    assert (SHIPPED.slope_rule().refusal(slope, low, high) is None) is passes


def test_observed_expected_check_refuses_a_model_off_in_the_large() -> None:
    assert observed_expected_check(_predictions(20_000, 1), SHIPPED).passed
    low = observed_expected_check(_predictions(20_000, 1, scale=0.8), SHIPPED)
    assert not low.passed and "observed/expected 1.2" in low.reason and "outside" in low.reason
    assert not observed_expected_check(_predictions(20_000, 1, scale=1.25), SHIPPED).passed
    # ranges set wider in the config widen what passes
    wide = SHIPPED.model_copy(
        update={
            "observed_expected_range": (0.7, 1.43),
            "observed_expected_interval_range": (0.8, 1.25),
        }
    )
    assert observed_expected_check(_predictions(20_000, 1, scale=0.8), wide).passed


def test_calibration_check_judges_the_slope_with_its_interval() -> None:
    rows = _predictions(200_000, 6)
    z = np.log(rows["p"] / (1 - rows["p"]))
    assert calibration_check(rows, SHIPPED).passed
    # predictions too spread out: slope 0.85, inside 0.8-1.2, but surely below 0.9
    spread = rows.assign(p=1 / (1 + np.exp(-(z + 2.5) / 0.85 + 2.5)))
    check = calibration_check(spread, SHIPPED)
    assert not check.passed and "whole interval" in check.reason, check.reason
    # far too spread out: the point itself is refused
    check = calibration_check(rows.assign(p=1 / (1 + np.exp(-(z + 2.5) / 0.6 + 2.5))), SHIPPED)
    assert not check.passed and "the point" in check.reason, check.reason


def test_baseline_check_refuses_a_model_worse_than_its_baseline(config: TrainingConfig) -> None:
    # the baseline knows the risk exactly, the served model only through noise
    worse = _predictions(20_000, 2)
    worse["p"], worse["p_baseline"] = worse["p_baseline"].to_numpy(), worse["p"].to_numpy()
    z = np.log(worse["p_baseline"] / (1 - worse["p_baseline"]))
    worse["p"] = 1 / (1 + np.exp(-(z + np.random.default_rng(3).normal(0, 1.0, len(z)))))
    check = baseline_check(worse, config.gate, seed=0)
    assert not check.passed and check.name == "AUROC vs logistic baseline"
    assert baseline_check(_predictions(20_000, 2, noise=1.0), config.gate, seed=0).passed
    # too few people to tell them apart is no reason to refuse
    tied = _predictions(300, 4)
    tied["p_baseline"] = tied["p"]
    assert baseline_check(tied, config.gate, seed=0).passed
    # surely worse, but by less than the tolerance, as the champion check allows
    slightly = _predictions(100_000, 5, noise=0.15)
    slightly["p"], slightly["p_baseline"] = slightly["p_baseline"], slightly["p"]
    diff, _, high = paired_bootstrap_auroc_difference(
        slightly["y"].to_numpy(), slightly["p"].to_numpy(), slightly["p_baseline"].to_numpy(),
        replicates=200, confidence=0.95, seed=0,
    )  # fmt: skip
    assert -config.gate.auroc_tolerance < diff and high < 0
    assert baseline_check(slightly, config.gate, seed=0).passed
