"""Settings, read once at the entry point and passed down as plain values."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "CARERISK_HOME"
DEFAULT_HOME = ".carerisk"
TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


@dataclass(frozen=True)
class Settings:
    """Where everything lives. Two homes never share a file."""

    home: Path
    tracking_uri: str

    @property
    def store_path(self) -> Path:
        return self.home / "store.duckdb"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlflow-artifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def keys_path(self) -> Path:
        return self.home / "keys.json"

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.sqlite"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def objections_path(self) -> Path:
        return self.home / "objections.csv"


def load_settings(home: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from an explicit home, else CARERISK_HOME, else ./.carerisk."""
    env = os.environ if env is None else env
    root = Path(home or env.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
    default_uri = f"sqlite:///{root / 'mlflow.db'}"
    return Settings(home=root, tracking_uri=env.get("MLFLOW_TRACKING_URI") or default_uri)


def disable_telemetry(env: MutableMapping[str, str]) -> None:
    """Switch off every phone-home the stack has; these machines have no internet."""
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
