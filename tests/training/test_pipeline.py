"""Training refuses an outcome whose label needs a table the store's source lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.outcomes import COMPLEX_DEPENDENCY, FALLS
from features.store import load_extract
from tests.features.test_coverage import block, write_covered
from training.config import TrainingConfig
from training.fit import TrainingError
from training.pipeline import refuse_uncovered, train_outcome


def test_complex_dependency_without_social_care_is_refused_naming_the_source(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store.duckdb"
    load_extract(write_covered(tmp_path / "omop", block()), store)
    with pytest.raises(TrainingError) as refused:
        train_outcome(
            store,
            COMPLEX_DEPENDENCY,
            config=TrainingConfig.load(),
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifact_root=tmp_path / "artifacts",
        )
    words = str(refused.value)
    assert words.startswith("complex dependency cannot be trained on this store")
    assert "social_care" in words and "OMOP CDM holds no adult social care" in words
    assert not (tmp_path / "mlflow.db").exists()  # refused before any work
    refuse_uncovered(store, FALLS)  # its label's tables are all there
