"""Settings, read once at the entry point and passed down as plain values."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from features.home import Home

if TYPE_CHECKING:
    from codelists import CodeLists
    from features.codes import Codes
    from features.outcomes import OutcomeSet

HOME_ENV = "CARERISK_HOME"
OUTCOME_MODULES_ENV = "CARERISK_OUTCOME_MODULES"  # modules of extra outcomes, comma-separated
# where checkpoints of the audit chain are kept: outside the home, not writable by the service
CHECKPOINTS_ENV = "CARERISK_AUDIT_CHECKPOINTS"
CODELISTS_ENV = "CARERISK_CODELISTS"  # a site's folder of code lists (codelists/lists.py)
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
    """Where everything lives (the home's layout), the tracking store and the modules of extra
    outcomes (features/outcomes.py). Two homes never share a file."""

    home: Home
    tracking_uri: str
    outcome_modules: tuple[str, ...] = ()
    audit_checkpoints: Path | None = None  # serving/checkpoints.py
    codelists: Path | None = None  # a site's code lists; None: the packaged lists

    def outcomes(self) -> OutcomeSet:
        """The product's outcomes and the extra modules' (imported on first use: Ibis), with
        their SNOMED CT codings from the code lists."""
        from features.outcomes import outcome_set

        return outcome_set(self.outcome_modules, self.code_lists())

    def code_lists(self) -> CodeLists:
        """The code lists (checked as they load; read once per folder)."""
        return _code_lists(self.codelists)

    def codes(self) -> Codes:
        """The features' and outcomes' codes from the code lists."""
        from features.codes import Codes

        return Codes.from_lists(self.code_lists())


def load_settings(home: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from an explicit home, else CARERISK_HOME, else ./.carerisk."""
    env = os.environ if env is None else env
    layout = Home(Path(home or env.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve())
    return Settings(
        home=layout,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or layout.default_tracking_uri,
        outcome_modules=tuple(
            m.strip() for m in env.get(OUTCOME_MODULES_ENV, "").split(",") if m.strip()
        ),
        audit_checkpoints=Path(env[CHECKPOINTS_ENV]) if env.get(CHECKPOINTS_ENV) else None,
        codelists=Path(env[CODELISTS_ENV]).expanduser().resolve()
        if env.get(CODELISTS_ENV)
        else None,
    )


@cache
def _code_lists(folder: Path | None) -> CodeLists:
    from codelists import CodeLists

    return CodeLists.load(folder)


def disable_telemetry(env: MutableMapping[str, str]) -> None:
    """Switch off every phone-home the stack has; these machines have no internet."""
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
