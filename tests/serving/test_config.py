"""The service's settings travel from `carerisk serve` to the server process as CARERISK_
variables: the outcome modules too, so the server knows the outcomes the command knew."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from carerisk.commands.serve import serve
from carerisk.settings import load_settings
from features.home import Home
from features.outcomes import PRODUCT, UnknownOutcome
from serving.config import ServingConfig
from tests import emergency_outcome


def test_settings_round_trip_through_the_environment(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={"CARERISK_OUTCOME_MODULES": emergency_outcome.MODULE})
    assert settings.home == Home(tmp_path.resolve())
    assert settings.outcome_modules == (emergency_outcome.MODULE,)
    config = ServingConfig(
        home=settings.home.root,
        tracking_uri=settings.tracking_uri,
        outcome_modules=settings.outcome_modules,
        max_batch=7,
    )
    env = config.to_env()
    assert env["CARERISK_OUTCOME_MODULES"] == emergency_outcome.MODULE
    assert ServingConfig.from_env(env) == config
    served = config.served_outcomes()
    assert [o.name for o in served] == [*PRODUCT.names(), "emergency_admission"]


def test_served_outcomes_default_to_every_registered_one_and_refuse_others(tmp_path: Path) -> None:
    config = ServingConfig.from_env({"CARERISK_HOME": str(tmp_path)})
    assert config.tracking_uri == Home(tmp_path).default_tracking_uri
    assert config.served_outcomes() == PRODUCT.outcomes
    chosen = config.model_copy(update={"outcomes": ("complex-dependency",)})
    assert [o.name for o in chosen.served_outcomes()] == ["complex_dependency"]
    with pytest.raises(UnknownOutcome, match="emergency-admission"):
        config.model_copy(update={"outcomes": ("emergency-admission",)}).served_outcomes()


def test_the_serve_options_default_to_the_service_settings(tmp_path):
    """`carerisk serve` and ServingConfig read one set of defaults (serving/defaults.py)."""
    options = {
        name: parameter.default.default
        for name, parameter in inspect.signature(serve).parameters.items()
        if name != "ctx"
    }
    fields = {
        "max_batch": "max_batch", "rate": "rate_per_second", "burst": "burst",
        "stale_after_days": "stale_after_days",
        "unauthenticated_rate": "unauthenticated_per_second",
        "unauthenticated_burst": "unauthenticated_burst",
        "header_timeout": "header_timeout_seconds", "body_timeout": "body_timeout_seconds",
        "fire_sharing": "fire_sharing", "watch_seconds": "reload_poll_seconds",
    }  # fmt: skip
    config = ServingConfig(home=tmp_path, tracking_uri="sqlite:///unused.db")
    for option, field in fields.items():
        assert options[option] == getattr(config, field), option
    assert "holds the snapshot" not in inspect.signature(serve).parameters["workers"].default.help
