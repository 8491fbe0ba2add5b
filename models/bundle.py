"""What a trained model is: LightGBM text, a calibrator, the ordered features and metadata.

A bundle is a folder of plain files with sha256 checksums; no pickles anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.bands import RiskBands
from features.feature_list import Feature
from models.calibration import Calibrator
from models.encoding import encode, encode_array, feature_from_dict, feature_to_dict
from models.reasons import Reason, make_reason, shown_as_reason
from models.treeshap import TreeExplainer, UnsupportedModel

MODEL_FILE = "model.txt"
CALIBRATOR_FILE = "calibrator.json"
FEATURES_FILE = "features.json"
BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1
COVERAGE = "coverage"  # metadata: what the training store's source lacked (features.coverage)

log = logging.getLogger("carerisk.models")


class BundleError(ValueError):
    """A bundle folder is missing, incomplete or has been changed since it was saved."""


CODELISTS_DIGEST = "codelists_digest"  # metadata key: the digest of the code lists trained on


def with_codelists_digest(bundle: ModelBundle, digest: str) -> ModelBundle:
    """The bundle with the digest of the code lists its features were computed with."""
    return replace(bundle, metadata={**bundle.metadata, CODELISTS_DIGEST: digest})


def check_codelists_digest(bundle: ModelBundle, digest: str) -> None:
    """Refuse a bundle trained on other code lists than those loaded (`digest`)."""
    trained = bundle.metadata.get(CODELISTS_DIGEST)
    if trained is None:
        raise BundleError(
            f"the {bundle.outcome} bundle does not record the code lists it was trained on; "
            "train it again"
        )
    if trained != digest:
        raise BundleError(
            f"the {bundle.outcome} bundle was trained on code lists {str(trained)[:12]}, but "
            f"the lists loaded are {digest[:12]}: its features would not mean what they meant "
            "in training; train it again or load the lists it was trained on"
        )


@dataclass(frozen=True)
class Assessment:
    """What scoring returns for a frame of people, row-aligned."""

    probabilities: np.ndarray
    bands: list[str]
    reasons: list[list[Reason]]


@dataclass(frozen=True)
class TopReasons:
    """The top reasons of many people as arrays, row-aligned."""

    picks: np.ndarray  # (n, k) positions in the bundle's features, largest |SHAP| first
    contributions: np.ndarray  # (n, k) their SHAP values (log-odds)

    @classmethod
    def empty(cls, k: int) -> TopReasons:
        return cls(np.empty((0, k), dtype=int), np.empty((0, k), dtype=float))

    @classmethod
    def concat(cls, parts: Sequence[TopReasons]) -> TopReasons:
        return cls(
            np.concatenate([p.picks for p in parts]),
            np.concatenate([p.contributions for p in parts]),
        )


def _top(contrib: np.ndarray, usable: np.ndarray, top_k: int) -> TopReasons:
    """The top_k usable columns of each row by |SHAP|; a stable sort keeps registry order on
    ties."""
    if usable.size == 0:
        return TopReasons(
            np.empty((len(contrib), 0), dtype=int), np.empty((len(contrib), 0), dtype=float)
        )
    order = np.argsort(-np.abs(contrib[:, usable]), axis=1, kind="stable")[:, :top_k]
    picks = usable[order]
    return TopReasons(picks, np.take_along_axis(contrib, picks, axis=1))


@dataclass(frozen=True)
class ModelBundle:
    model_text: str
    calibrator: Calibrator
    features: tuple[Feature, ...]
    outcome: str
    bands: RiskBands
    metadata: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def booster(self) -> lgb.Booster:
        return lgb.Booster(model_str=self.model_text)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def coverage(self) -> dict[str, Any] | None:
        """What the training store's source lacked: {"absent", "not_supplied",
        "missing_features", "partial_features"}; None for a bundle saved before it was kept."""
        value = self.metadata.get(COVERAGE)
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def missing_features(self) -> frozenset[str]:
        """Features the training source could not give: never a reason."""
        return frozenset((self.coverage or {}).get("missing_features", ()))

    def with_coverage(self, coverage: Mapping[str, Any]) -> ModelBundle:
        """The bundle recording the coverage it was trained on."""
        return replace(self, metadata={**self.metadata, COVERAGE: dict(coverage)})

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return encode(frame, self.features)

    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        """LightGBM log-odds for each row."""
        return self._raw(encode_array(frame, self.features))

    def _raw(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True), dtype=float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for each row."""
        return self.calibrator.apply(self.raw_score(frame))

    def band(self, frame: pd.DataFrame) -> list[str]:
        return self.bands.band(self.predict(frame))

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP values (log-odds): one column per feature, then the base value."""
        return self._contributions(encode_array(frame, self.features))

    @cached_property
    def explainer(self) -> TreeExplainer | None:
        """The fast exact TreeSHAP of the booster (models.treeshap), built once; None when it
        cannot explain this booster, and LightGBM's pred_contrib is used instead."""
        try:
            return TreeExplainer.from_booster(self.booster)
        except UnsupportedModel as error:
            log.info("%s reasons use LightGBM's pred_contrib: %s", self.outcome, error)
            return None

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        """pred_contrib's values (to 1e-9), from the fast explainer when there is one."""
        if self.explainer is not None:
            return self.explainer.contributions(x)
        return np.asarray(self.booster.predict(x, pred_contrib=True), dtype=float)

    def explain(
        self, frame: pd.DataFrame, top_k: int = 5, allowed: Collection[str] | None = None
    ) -> list[list[Reason]]:
        """The top_k features by |SHAP| for each person, largest first; only features named in
        `allowed` when it is given (a restricted audience gets its own top reasons)."""
        return self.assess(frame, top_k, allowed).reasons

    def assess(
        self, frame: pd.DataFrame, top_k: int = 5, allowed: Collection[str] | None = None
    ) -> Assessment:
        """Probabilities, bands and reasons from one encoding and one TreeSHAP pass."""
        probabilities, tops = self.score_arrays(
            encode_array(frame, self.features), top_k, {"asked": allowed}
        )
        top = tops["asked"]
        values = frame[self.feature_names].to_numpy(dtype=object)
        return Assessment(
            probabilities=probabilities,
            bands=self.bands.band(probabilities),
            reasons=[
                self.reasons_for(values[i], top.picks[i], top.contributions[i])
                for i in range(len(frame))
            ],
        )

    def score_arrays(
        self,
        x: np.ndarray,
        top_k: int = 5,
        audiences: Mapping[str, Collection[str] | None] | None = None,
        chunk_rows: int = 50_000,
    ) -> tuple[np.ndarray, dict[str, TopReasons]]:
        """Probabilities and, for each audience (a set of features it may be shown, None for
        all), the top_k reasons as arrays: cheap to hold for a whole snapshot."""
        probabilities = self.calibrator.apply(self._raw(x)) if len(x) else np.empty(0)
        return probabilities, self.top_reasons(x, top_k, audiences, chunk_rows)

    def top_reasons(
        self,
        x: np.ndarray,
        top_k: int = 5,
        audiences: Mapping[str, Collection[str] | None] | None = None,
        chunk_rows: int = 50_000,
    ) -> dict[str, TopReasons]:
        """Each audience's top_k reasons; TreeSHAP runs once per chunk of rows, so memory
        stays bounded."""
        audiences = audiences if audiences is not None else {"all": None}
        usable = {name: self._usable(allowed) for name, allowed in audiences.items()}
        parts: dict[str, list[TopReasons]] = {name: [] for name in audiences}
        for start in range(0, len(x), chunk_rows):
            contrib = self._contributions(x[start : start + chunk_rows])[:, : len(self.features)]
            for name, columns in usable.items():
                parts[name].append(_top(contrib, columns, top_k))
        return {
            name: TopReasons.concat(p) if p else TopReasons.empty(top_k)
            for name, p in parts.items()
        }

    def _usable(self, allowed: Collection[str] | None) -> np.ndarray:
        return np.array(
            [
                j
                for j, f in enumerate(self.features)
                if shown_as_reason(f, self.missing_features)
                and (allowed is None or f.name in allowed)
            ],
            dtype=int,
        )

    def reasons_for(
        self,
        values: Sequence[Any] | Mapping[int, Any],
        picks: np.ndarray,
        contributions: np.ndarray,
    ) -> list[Reason]:
        """One person's reasons from `score_arrays` output; `values[j]` is the person's raw
        value of feature j (all of them in feature order, or just the picked ones)."""
        return [
            self._reason(self.features[j], values[j], c)
            for j, c in zip(picks.tolist(), contributions.tolist(), strict=True)
        ]

    def _reason(self, feature: Feature, raw_value: Any, contribution: float) -> Reason:
        value = plain_value(raw_value)
        label = feature.describe("unknown" if value is None else value)
        return make_reason(feature, label, value, float(contribution))

    # --- as one JSON text (shipped to Spark executors) -----------------------------------

    def to_json(self) -> str:
        """The bundle as one JSON text: model text, calibrator, features, bands, metadata.
        Plain data only, so it can be shipped and rebuilt (`from_json`) without pickles."""
        return json.dumps(
            {
                "format": BUNDLE_FORMAT,
                "outcome": self.outcome,
                "model": self.model_text,
                "calibrator": self.calibrator.to_dict(),
                "features": [feature_to_dict(f) for f in self.features],
                "bands": self.bands.to_dict(),
                "metadata": self.metadata,
            },
            default=str,
        )

    @classmethod
    def from_json(cls, text: str) -> ModelBundle:
        data = json.loads(text)
        if data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a format-{BUNDLE_FORMAT} bundle text")
        return cls(
            model_text=data["model"],
            calibrator=Calibrator.from_dict(data["calibrator"]),
            features=tuple(feature_from_dict(f) for f in data["features"]),
            outcome=data["outcome"],
            bands=RiskBands.from_dict(data["bands"]),
            metadata=dict(data["metadata"]),
        )

    # --- files -------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Write the four bundle files; bundle.json carries the others' sha256."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            MODEL_FILE: self.model_text,
            CALIBRATOR_FILE: self.calibrator.to_json(),
            FEATURES_FILE: json.dumps([feature_to_dict(f) for f in self.features], indent=2),
        }
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        manifest = {
            "format": BUNDLE_FORMAT,
            "outcome": self.outcome,
            "bands": self.bands.to_dict(),
            "metadata": self.metadata,
            "checksums": {name: _sha256(directory / name) for name in files},
        }
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        (directory / BUNDLE_FILE).write_text(text, encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelBundle:
        """Read a bundle, refusing it if any file's checksum does not match."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        for name, expected in manifest["checksums"].items():
            path = directory / name
            if not path.is_file():
                raise BundleError(f"bundle {directory} is missing {name}")
            if _sha256(path) != expected:
                raise BundleError(
                    f"bundle file {path} does not match its checksum in {BUNDLE_FILE}; "
                    "it was changed after saving"
                )
        features = json.loads((directory / FEATURES_FILE).read_text(encoding="utf-8"))
        return cls(
            model_text=(directory / MODEL_FILE).read_text(encoding="utf-8"),
            calibrator=Calibrator.from_json(
                (directory / CALIBRATOR_FILE).read_text(encoding="utf-8")
            ),
            features=tuple(feature_from_dict(f) for f in features),
            outcome=manifest["outcome"],
            bands=RiskBands.from_dict(manifest["bands"]),
            metadata=dict(manifest.get("metadata", {})),
        )


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(f"no {BUNDLE_FILE} in {directory}: not a model bundle")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    wanted = {MODEL_FILE, CALIBRATOR_FILE, FEATURES_FILE}
    if manifest.get("format") != BUNDLE_FORMAT or set(manifest.get("checksums", {})) != wanted:
        raise BundleError(f"{path} is not a format-{BUNDLE_FORMAT} bundle manifest")
    return dict(manifest)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plain_value(value: Any) -> Any:
    """A JSON-friendly scalar; None for missing and for a number that is not finite."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def feature_list_hash(features: Sequence[Feature]) -> str:
    """sha256 of the ordered feature definitions."""
    text = json.dumps([feature_to_dict(f) for f in features], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
