"""Champions: from the MLflow registry into the BentoML model store, checked before serving.

At start the service copies the `champion` of each outcome into the BentoML store (the bundle
files: LightGBM text, calibrator JSON, feature list, with their checksums), so it keeps serving
from that copy when the tracking server is down. A pointer file names the champion copy per
outcome. Loading refuses a bundle whose files do not match their checksums or whose feature list
disagrees with the registry, naming the file or the features.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from features.feature_list import FEATURES, Feature
from features.home import Home
from features.outcomes import Outcome
from models import BundleError, ModelBundle
from models.bundle import check_codelists_digest
from models.registered import BUNDLE_ARTIFACT, CHAMPION
from serving.scoring import ServedModel


class ChampionError(RuntimeError):
    """The service must not start: the message says which model, file or feature."""


def import_champions(
    tracking_uri: str, layout: Home, outcomes: Sequence[Outcome], *, point: bool = True
) -> dict[str, str]:
    """Copy each outcome's champion from MLflow into the BentoML store; returns outcome -> tag.
    With `point`, the pointer file then names them (a reload points only once they verify).

    Raises ChampionError when an outcome has no champion. Raises the tracking client's error when
    the tracking server cannot be reached (the caller then serves the copies already imported).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    tags: dict[str, str] = {}
    for outcome in outcomes:
        name = outcome.model_name
        try:
            version = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException as error:
            if "RESOURCE_DOES_NOT_EXIST" in str(error.error_code) or "not found" in str(error):
                raise ChampionError(
                    f"{name} has no '{CHAMPION}' version in the registry at {tracking_uri}; "
                    f"train and promote it first (carerisk train / carerisk promote)"
                ) from None
            raise
        tags[outcome.name] = _import_version(client, outcome, version)
    if point:
        write_pointer(layout, tags)
    return tags


def _import_version(client: Any, outcome: Outcome, version: Any) -> str:
    import bentoml

    tag = f"{outcome.model_name}:v{version.version}-{version.run_id[:12]}"
    try:
        bentoml.models.get(tag)
        return tag  # already imported
    except bentoml.exceptions.NotFound:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(version.run_id, BUNDLE_ARTIFACT, tmp))
        ModelBundle.load(local)  # refuse a damaged bundle before it reaches the store
        metadata = {
            "outcome": outcome.name,
            "registered_model": outcome.model_name,
            "registered_version": str(version.version),
            "run_id": version.run_id,
        }
        try:
            with bentoml.models.create(
                tag, labels={"outcome": outcome.name, "source": "mlflow"}, metadata=metadata
            ) as model:
                shutil.copytree(local, Path(model.path) / BUNDLE_ARTIFACT)
        except bentoml.exceptions.BentoMLException:
            bentoml.models.get(tag)  # another worker imported it meanwhile; else raise
    return tag


def write_pointer(layout: Home, tags: dict[str, str]) -> None:
    """Name these copies as the champions served (the file is replaced, never half-written)."""
    path = layout.champions_pointer
    current = _read_pointer(layout)
    current.update(tags)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def _read_pointer(layout: Home) -> dict[str, str]:
    path = layout.champions_pointer
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def load_champions(
    layout: Home,
    outcomes: Sequence[Outcome],
    registry: Sequence[Feature] = FEATURES,
    *,
    tags: dict[str, str] | None = None,
    codelists_digest: str | None = None,
) -> dict[str, ServedModel]:
    """The imported champions (those the pointer file names, or `tags`), verified: checksums,
    feature list against the registry and, given `codelists_digest`, the code lists they were
    trained on against those loaded."""
    import bentoml

    pointer = _read_pointer(layout) if tags is None else tags
    served: dict[str, ServedModel] = {}
    for outcome in outcomes:
        tag = pointer.get(outcome.name)
        if not tag:
            raise ChampionError(
                f"no champion of {outcome.model_name} has been imported into the BentoML "
                f"store at {layout.bentoml_home}; start once with the tracking server reachable"
            )
        model = bentoml.models.get(tag)
        folder = Path(model.path) / BUNDLE_ARTIFACT
        try:
            bundle = ModelBundle.load(folder)
        except BundleError as error:
            raise ChampionError(f"{tag}: {error}") from None
        check_feature_list(tag, bundle.features, registry)
        if codelists_digest is not None:
            try:
                check_codelists_digest(bundle, codelists_digest)
            except BundleError as error:
                raise ChampionError(f"{tag}: {error}") from None
        if bundle.outcome != outcome.name:
            raise ChampionError(f"{tag}: its bundle is a model of {bundle.outcome}")
        meta = model.info.metadata
        served[outcome.name] = ServedModel(
            outcome=outcome,
            name=str(meta.get("registered_model", outcome.model_name)),
            version=str(meta.get("registered_version", model.tag.version)),
            bundle=bundle,
            run_id=str(meta.get("run_id", "")),
        )
    return served


def check_coverage(models: Mapping[str, ServedModel], store_path: Path) -> None:
    """Each champion was trained on a store whose source lacked what this store's lacks (a
    table absent, a column not supplied): else it must not score it."""
    from features.coverage import compare, read_store_coverage

    serving = read_store_coverage(store_path)
    for model in models.values():
        why = compare(model.bundle.coverage, serving)
        if why is not None:
            raise ChampionError(f"{model.name} version {model.version}: {why}")


def check_feature_list(tag: str, model: Sequence[Feature], registry: Sequence[Feature]) -> None:
    """The model's features must be the registry's, in order, with the same kinds and levels."""

    def shape(features: Sequence[Feature]) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(f.name, f.kind, tuple(f.categories)) for f in features]

    if shape(model) == shape(registry):
        return
    have = {f.name for f in model}
    want = {f.name for f in registry}
    parts = []
    if want - have:
        parts.append("missing from the model: " + ", ".join(sorted(want - have)))
    if have - want:
        parts.append("not in the registry: " + ", ".join(sorted(have - want)))
    if not parts:
        parts.append("same names but a different order, kind or categories")
    raise ChampionError(f"{tag}: its feature list disagrees with the registry ({'; '.join(parts)})")
