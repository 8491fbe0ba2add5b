"""What the scoring service needs to know, read once where the service starts.

`carerisk serve` passes these to the server process as environment variables (the service is
built by BentoML, not by us), so the service reads them in one place: `ServingConfig.from_env`.
Among them, CARERISK_OUTCOME_MODULES names modules of extra outcomes (features/outcomes.py), so
the server knows the same outcomes as the command that started it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.home import Home
from features.outcomes import Outcome, outcome_set
from serving import defaults

PREFIX = "CARERISK_"
RECORD_BYTES = defaults.RECORD_BYTES
# comma-separated in the environment
LISTS = ("outcomes", "outcome_modules", "cds_cors_origins", "trusted_proxies")


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    tracking_uri: str
    outcome_modules: tuple[str, ...] = ()  # modules of extra outcomes
    outcomes: tuple[str, ...] = ()  # the outcomes served; empty: every registered outcome
    # defaults and bounds: serving/defaults.py, which the `carerisk serve` options read too
    max_batch: int = Field(default=defaults.MAX_BATCH, ge=1, le=defaults.MAX_BATCH_LIMIT)
    max_body_bytes: int = Field(default=defaults.MAX_BODY_BYTES, ge=1_000)
    # POST /v1/score/records carries whole feature records: its limit is this or RECORD_BYTES
    # for each of `max_batch` records, the larger (`records_limit`)
    records_body_bytes: int = Field(default=defaults.RECORDS_BODY_BYTES, ge=1_000)
    max_head_bytes: int = Field(default=defaults.MAX_HEAD_BYTES, ge=1_024)  # (431)
    max_headers: int = Field(default=defaults.MAX_HEADERS, ge=8)
    # addresses or networks (CIDR) of proxies whose X-Forwarded-For is believed (serving/calls.py)
    trusted_proxies: tuple[str, ...] = ()
    rate_per_second: float = Field(default=defaults.RATE_PER_SECOND, gt=0)
    burst: int = Field(default=defaults.BURST, ge=1)
    # failed authentications a client address may make (a second, and at once) before the
    # address is refused without its key being checked (serving/request_guard.py)
    unauthenticated_per_second: float = Field(default=defaults.UNAUTHENTICATED_PER_SECOND, gt=0)
    unauthenticated_burst: int = Field(default=defaults.UNAUTHENTICATED_BURST, ge=1)
    header_timeout_seconds: float = Field(
        default=defaults.HEADER_TIMEOUT_SECONDS, gt=0, le=defaults.HEADER_TIMEOUT_MAX
    )
    body_timeout_seconds: float = Field(
        default=defaults.BODY_TIMEOUT_SECONDS, gt=0, le=defaults.BODY_TIMEOUT_MAX
    )
    audit_checkpoints: Path | None = None  # outside the home, not writable by the service
    codelists: Path | None = None  # a site's code lists (CARERISK_CODELISTS); None: packaged
    stale_after_days: int = Field(default=defaults.STALE_AFTER_DAYS, ge=1)
    top_k: int = Field(default=defaults.TOP_K, ge=1, le=20)
    register_max: int = Field(default=defaults.REGISTER_MAX, ge=1)
    # what the fire role may read (serving/referral_routes.py)
    fire_sharing: defaults.FireSharing = defaults.FIRE_SHARING_DEFAULT
    public_url: str = ""  # the service's address as callers reach it (the CDS audience)
    # the address the service was started on (http://host:port); "" when it listens on every
    # address, and then the CDS Hooks routes need public_url (serving/request_guard.py)
    listen_url: str = ""
    cds_cors_origins: tuple[str, ...] = ()  # browser origins of CDS clients allowed by CORS
    # reloads (serving/watch.py): compare the champions and the snapshot every so many seconds
    # (0: never), and read the home's generation file, which a reload asked of one worker bumps
    reload_poll_seconds: float = Field(default=defaults.RELOAD_POLL_SECONDS, ge=0)
    reload_follow_seconds: float = Field(default=defaults.RELOAD_FOLLOW_SECONDS, gt=0, le=60)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {text!r} is not an address or CIDR") from None
        return value

    @property
    def records_limit(self) -> int:
        """The body limit of POST /v1/score/records: room for `max_batch` records."""
        return max(self.records_body_bytes, self.max_batch * RECORD_BYTES)

    @property
    def base_url(self) -> str:
        """The service's own address for audiences and links: public_url, else the address it
        was started on; "" when neither is known."""
        return (self.public_url or self.listen_url).rstrip("/")

    @property
    def layout(self) -> Home:
        return Home(self.home)

    def served_outcomes(self) -> tuple[Outcome, ...]:
        """The definitions of the outcomes served (raises UnknownOutcome naming the known)."""
        from codelists import CodeLists

        registry = outcome_set(self.outcome_modules, CodeLists.load(self.codelists))
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
