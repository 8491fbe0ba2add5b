"""A champion is served only from a store whose source lacks what its training source lacked."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.coverage import read_store_coverage
from features.feature_list import FEATURES
from features.outcomes import FALLS
from features.store import load_extract
from serving.model_store import ChampionError, check_coverage
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


# BentoML reads BENTOML_HOME when it is first imported: the scorer is built in a fresh
# interpreter, as the service builds it at start.
BUILD = r"""
import os, sys
from pathlib import Path

from features.home import Home

home = Home(Path(sys.argv[1]))
os.environ["BENTOML_HOME"] = str(home.bentoml_home)
from serving.model_store import ChampionError
from serving.config import ServingConfig
from serving.swap import build_scorer

config = ServingConfig(home=home.root, tracking_uri=home.default_tracking_uri)
try:
    build_scorer(config, config.served_outcomes(), import_from_registry=False)
except ChampionError as error:
    print(error)
    sys.exit(3)
"""


@pytest.mark.slow
def test_the_service_refuses_champions_trained_on_a_source_with_more(
    trained_home: Path, tmp_path: Path
) -> None:
    """The trained home's champions learned from every table; once the store holds a full
    extract without social care, fire and ambulance, the service will not build its scorer."""
    import subprocess
    import sys

    from features.home import Home
    from tests.features.test_coverage import omop_like
    from tests.live import child_env, copy_home

    home = copy_home(trained_home, tmp_path / "home")
    layout = Home(home)
    load_extract(omop_like(layout.extract_dir, tmp_path / "omop"), layout.store_path, kind="full")
    built = subprocess.run(
        [sys.executable, "-c", BUILD, str(home)],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(),
    )
    assert built.returncode == 3, built.stdout[-2000:] + built.stderr[-2000:]
    words = built.stdout
    assert "version" in words and "the data it was trained on and this store's differ" in words
    assert "Trained on: every table mapped and every column supplied." in words
    assert "This store: ambulance_incident is absent from the source" in words
