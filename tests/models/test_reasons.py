"""One reason type from the bundle to the JSON: the bundle's reasons are models.reasons.Reason,
and the service's plain records (reason_fields) carry exactly its fields, in its order."""

from __future__ import annotations

import numpy as np

from features.feature_list import feature
from models.reasons import Reason, make_reason, reason_fields
from serving.score_results import ScoreResult
from tests.models.frames import make_frame
from training.fit import TrainedModels


def test_plain_records_have_exactly_the_reason_fields_in_order() -> None:
    record = reason_fields(feature("falls_90d"), "2 recorded falls in the last 3 months", 2, 0.4)
    assert list(record) == list(Reason.model_fields)
    assert Reason.model_validate(record) == make_reason(
        feature("falls_90d"), "2 recorded falls in the last 3 months", 2, 0.4
    )
    assert reason_fields(feature("age_years"), "aged 80", 80, -0.1)["direction"] == "lowers"


def test_the_bundle_and_the_api_share_the_type(trained: TrainedModels) -> None:
    reasons = trained.bundle.explain(make_frame(people=20, seed=4), top_k=3)
    assert reasons and all(type(r) is Reason for person in reasons for r in person)
    assert ScoreResult.model_fields["reasons"].annotation == list[Reason]
    first = reasons[0][0]
    assert Reason.model_validate_json(first.model_dump_json()) == first
    assert not isinstance(first.value, np.generic)  # plain JSON values, not numpy scalars


def test_a_feature_missing_from_the_source_is_never_a_reason(trained: TrainedModels) -> None:
    """A bundle trained on a source that cannot give a feature never gives it as a reason,
    in the bundle's reasons and in the service's arrays alike."""
    from features.coverage import Coverage
    from models.reasons import shown_as_reason

    frame = make_frame(people=30, seed=13)
    usual = {r.feature for person in trained.bundle.explain(frame, top_k=10) for r in person}
    assert "falls_12m" in usual
    record = {**Coverage().model_record(()), "missing_features": ["falls_12m"]}
    bundle = trained.bundle.with_coverage(record)
    assert bundle.missing_features == {"falls_12m"}
    for person in bundle.explain(frame, top_k=10):
        assert "falls_12m" not in {r.feature for r in person}
    x = bundle.matrix(frame).to_numpy(dtype=float)
    picks = bundle.top_reasons(x, top_k=10)["all"].picks
    position = bundle.feature_names.index("falls_12m")
    assert position not in set(picks.ravel().tolist())
    assert not shown_as_reason(feature("falls_90d"), {"falls_90d"})
    assert shown_as_reason(feature("falls_90d"))
    assert not shown_as_reason(feature("lookback_days"))
