"""The registry's champions, as bundles that score: what `carerisk score-all` and
`carerisk monitor` run. The service imports its own copies (serving/model_store.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from features.outcomes import Outcome
from models.bundle import ModelBundle
from models.registered import BUNDLE_ARTIFACT, CHAMPION
from models.score_all import Champion
from training.tracking import client_for, version_by_alias


class NoChampion(LookupError):
    """An outcome has no champion in the registry."""


def registry_champions(tracking_uri: str, outcomes: Sequence[Outcome]) -> list[Champion]:
    """Each outcome's champion (its bundle checked against its checksums); NoChampion names
    the first outcome without one."""
    client = client_for(tracking_uri)
    found = []
    for outcome in outcomes:
        version = version_by_alias(client, outcome.model_name, CHAMPION)
        if version is None:
            raise NoChampion(
                f"{outcome.model_name} has no '{CHAMPION}' version in the registry at "
                f"{tracking_uri}; train and promote it first (carerisk train / carerisk promote)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(str(version.run_id), BUNDLE_ARTIFACT, tmp)
            bundle = ModelBundle.load(Path(local))
        if bundle.outcome != outcome.name:
            raise NoChampion(
                f"{outcome.model_name} v{version.version} is a model of {bundle.outcome}"
            )
        found.append(
            Champion(outcome, bundle, outcome.model_name, str(version.version), str(version.run_id))
        )
    return found
