"""Training refuses an outcome whose label needs a table the store's source lacks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.outcomes import COMPLEX_DEPENDENCY, FALLS
from features.store import load_extract
from tests.features.test_coverage import block, omop_like, write_covered
from training.config import TrainingConfig
from training.fit import TrainingError
from training.pipeline import (
    MIN_EVENTS,
    default_index_dates,
    refuse_too_few_events,
    refuse_uncovered,
    too_few_events,
    train_outcome,
)


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


@pytest.mark.slow
def test_falls_trained_on_a_source_without_social_care_records_what_it_lacked(
    tmp_path: Path,
) -> None:
    """A 3,000-person county without the tables OMOP lacks: falls trains, with the missing
    features empty in every row, never a reason, listed by the bundle and the model card."""
    import json

    import pandas as pd

    from features import training_sets
    from features.coverage import read_store_coverage
    from features.feature_list import FEATURES
    from models import ModelBundle
    from synthetic import CountyConfig, generate
    from tests.live import TEST_CONFIG

    county = tmp_path / "county"
    generate(CountyConfig(people=3_000, seed=5), county)
    store = tmp_path / "store.duckdb"
    load_extract(omop_like(county, tmp_path / "omop"), store)
    missing = read_store_coverage(store).missing_features(FEATURES)
    assert {"home_care_now", "ambulance_callouts_365d", "fire_visited", "imd_decile"} <= set(
        missing
    )
    dates = default_index_dates(store, FALLS)[-2:]
    frame = training_sets.build_training_set(store, FALLS, dates)
    assert frame[missing].isna().all().all()
    assert frame["falls_365d"].notna().all() and frame["imd_quintile"].isna().all()

    reports = tmp_path / "reports"
    result = train_outcome(
        store,
        FALLS,
        config=TrainingConfig.load(TEST_CONFIG),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=tmp_path / "artifacts",
        reports_dir=reports,
    )
    bundle_dir = next((tmp_path / "artifacts").rglob("bundle.json")).parent
    bundle = ModelBundle.load(bundle_dir)
    assert bundle.coverage is not None
    assert sorted(bundle.missing_features) == sorted(missing)
    assert "social_care" in bundle.coverage["absent"]
    assert set(bundle.coverage["missing_descriptors"]) == {"imd_quintile", "district", "gp_system"}
    people = training_sets.build_training_set(store, FALLS, dates[-1:]).head(300)
    for person in bundle.explain(people, top_k=10):
        assert not {r.feature for r in person} & set(missing)
    html = next(reports.rglob("*.html")).read_text()
    assert "What the source lacks" in html and "social_care is absent from the source" in html
    assert "Not tabled: imd_quintile" in html
    data = json.loads(next(reports.rglob("*.json")).read_text())
    descriptors = {row["descriptor"] for row in data["fairness"]["table"]}
    assert descriptors.isdisjoint({"imd_quintile", "district", "gp_system"})
    assert result.outcome == "falls" and pd.notna(result.best_iteration)


def _rows(events: int, people: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"person_id": range(people), "label": [1] * events + [0] * (people - events)}
    )


def test_too_few_events_is_refused_with_the_counts() -> None:
    enough, few = _rows(MIN_EVENTS, 100), _rows(MIN_EVENTS - 1, 50)
    assert too_few_events(enough, enough, FALLS) is None
    why = too_few_events(enough, few, FALLS)
    assert why == (
        "falls cannot be trained on this store: too few events (a recorded fall within 12 "
        f"months) to learn from: the training dates {MIN_EVENTS} in 100 person-dates; the "
        f"validation date {MIN_EVENTS - 1} in 50 person-dates; at least {MIN_EVENTS} are "
        "needed in each"
    )
    with pytest.raises(TrainingError, match="too few events"):
        refuse_too_few_events(_rows(0, 20), enough, FALLS)
