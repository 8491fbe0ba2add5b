"""What the scoring service needs to know, read once where the service starts.

`carerisk serve` passes these to the server process as environment variables (the service is
built by BentoML, not by us), so the service reads them in one place: `ServingConfig.from_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from features.registry import OUTCOMES

PREFIX = "CARERISK_"


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    tracking_uri: str
    outcomes: tuple[str, ...] = OUTCOMES
    max_batch: int = Field(default=1000, ge=1, le=10_000)
    max_body_bytes: int = Field(default=2_000_000, ge=1_000)
    rate_per_second: float = Field(default=50.0, gt=0)
    burst: int = Field(default=100, ge=1)
    stale_after_days: int = Field(default=120, ge=1)
    top_k: int = Field(default=5, ge=1, le=20)
    register_max: int = Field(default=5000, ge=1)

    @property
    def store_path(self) -> Path:
        return self.home / "store.duckdb"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def objections_path(self) -> Path:
        return self.home / "objections.csv"

    def to_env(self) -> dict[str, str]:
        """The variables `from_env` reads back."""
        values = self.model_dump(exclude={"outcomes"})
        env = {PREFIX + key.upper(): str(value) for key, value in values.items()}
        env[PREFIX + "OUTCOMES"] = ",".join(self.outcomes)
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        env = os.environ if env is None else env
        home = env.get(PREFIX + "HOME")
        if not home:
            raise RuntimeError("CARERISK_HOME is not set; start the service with `carerisk serve`")
        values: dict[str, object] = {
            key: env[PREFIX + key.upper()]
            for key in cls.model_fields
            if key not in {"outcomes"} and PREFIX + key.upper() in env
        }
        values["home"] = Path(home)
        values.setdefault("tracking_uri", f"sqlite:///{Path(home) / 'mlflow.db'}")
        if PREFIX + "OUTCOMES" in env:
            values["outcomes"] = tuple(env[PREFIX + "OUTCOMES"].split(","))
        return cls.model_validate(values)
