"""What the scoring service needs to know, read once where the service starts.

`carerisk serve` passes these to the server process as environment variables (the service is
built by BentoML, not by us), so the service reads them in one place: `ServingConfig.from_env`.
Among them, CARERISK_OUTCOME_MODULES names modules of extra outcomes (features/outcomes.py), so
the server knows the same outcomes as the command that started it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.home import Home
from features.outcomes import Outcome, outcome_registry

PREFIX = "CARERISK_"
LISTS = ("outcomes", "outcome_modules", "cds_cors_origins")  # comma-separated in the environment


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    tracking_uri: str
    outcome_modules: tuple[str, ...] = ()  # modules of extra outcomes
    outcomes: tuple[str, ...] = ()  # the outcomes served; empty: every registered outcome
    max_batch: int = Field(default=1000, ge=1, le=10_000)
    max_body_bytes: int = Field(default=2_000_000, ge=1_000)
    rate_per_second: float = Field(default=50.0, gt=0)
    burst: int = Field(default=100, ge=1)
    # failed authentications a client address may make (a second, and at once) before the
    # address is refused without its key being checked (serving/gate.py)
    unauthenticated_per_second: float = Field(default=2.0, gt=0)
    unauthenticated_burst: int = Field(default=20, ge=1)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=25)  # under BentoML's 30 s
    audit_checkpoints: Path | None = None  # outside the home, not writable by the service
    codelists: Path | None = None  # a site's code lists (CARERISK_CODELISTS); None: packaged
    stale_after_days: int = Field(default=120, ge=1)
    top_k: int = Field(default=5, ge=1, le=20)
    register_max: int = Field(default=5000, ge=1)
    # what the fire role may read: only people referred with their agreement, or the register
    # of everyone in a cohort (an area with a data-sharing agreement); serving/referrals.py
    fire_sharing: Literal["referrals", "register"] = "referrals"
    public_url: str = ""  # the service's address as callers reach it; "" = the request's own
    cds_cors_origins: tuple[str, ...] = ()  # browser origins of CDS clients allowed by CORS
    # reloads (serving/watch.py): compare the champions and the snapshot every so many seconds
    # (0: never), and read the home's generation file, which a reload asked of one worker bumps
    reload_poll_seconds: float = Field(default=0.0, ge=0)
    reload_follow_seconds: float = Field(default=2.0, gt=0, le=60)

    @property
    def layout(self) -> Home:
        return Home(self.home)

    def served_outcomes(self) -> tuple[Outcome, ...]:
        """The definitions of the outcomes served (raises UnknownOutcome naming the known)."""
        registry = outcome_registry(self.outcome_modules)
        if not self.outcomes:
            return registry.outcomes
        return tuple(registry.get(name) for name in self.outcomes)

    def to_env(self) -> dict[str, str]:
        """The variables `from_env` reads back."""
        values = self.model_dump(exclude=set(LISTS))
        env = {
            PREFIX + key.upper(): str(value) for key, value in values.items() if value is not None
        }
        env.update({PREFIX + key.upper(): ",".join(getattr(self, key)) for key in LISTS})
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
            if key not in LISTS and PREFIX + key.upper() in env
        }
        values["home"] = Path(home)
        values.setdefault("tracking_uri", Home(Path(home)).default_tracking_uri)
        values.update({key: names_in(env.get(PREFIX + key.upper(), "")) for key in LISTS})
        return cls.model_validate(values)


def names_in(value: str) -> tuple[str, ...]:
    """The names in a comma-separated setting, blanks left out."""
    return tuple(part.strip() for part in value.split(",") if part.strip())
