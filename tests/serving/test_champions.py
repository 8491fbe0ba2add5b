"""A champion is served only from a store whose source lacks what its training source lacked."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.coverage import read_store_coverage
from features.outcomes import FALLS
from features.registry import FEATURES
from features.store import load_extract
from serving.champions import ChampionError, check_coverage
from serving.scoring import ServedModel
from tests.features.conftest import small_extract, write_extract
from tests.features.test_coverage import block, write_covered
from tests.models.frames import make_frame, small_features, split_latest
from training.config import TrainingConfig
from training.fit import fit


@pytest.fixture(scope="module")
def served() -> ServedModel:
    train, validation = split_latest(make_frame(people=1500, seed=5))
    trained = fit(train, validation, small_features(), FALLS, TrainingConfig.load())
    return ServedModel(FALLS, FALLS.model_name, "1", trained.bundle)


def test_a_model_trained_without_a_table_is_refused_by_a_store_with_it(
    served: ServedModel, tmp_path: Path
) -> None:
    omop, county = tmp_path / "omop.duckdb", tmp_path / "county.duckdb"
    load_extract(write_covered(tmp_path / "omop", block()), omop)
    load_extract(write_extract(tmp_path / "county", small_extract()), county)
    trained_on_omop = served.bundle.with_coverage(read_store_coverage(omop).model_record(FEATURES))
    model = ServedModel(FALLS, served.name, "7", trained_on_omop)
    check_coverage({"falls": model}, omop)
    refused = "carerisk-falls version 7: the data it was trained on"
    with pytest.raises(ChampionError, match=refused) as e:
        check_coverage({"falls": model}, county)
    assert "Trained on: ambulance_incident is absent from the source" in str(e.value)
    assert str(e.value).endswith("This store: every table mapped and every column supplied.")
    check_coverage({"falls": served}, county)  # a bundle from before the record: complete
    with pytest.raises(ChampionError, match="This store: ambulance_incident is absent"):
        check_coverage({"falls": served}, omop)
