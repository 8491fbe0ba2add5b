"""One reason type from the bundle to the JSON: the bundle's reasons are models.reasons.Reason,
and the service's plain records (reason_fields) carry exactly its fields, in its order."""

from __future__ import annotations

import numpy as np

from features.registry import feature
from models.reasons import Reason, make_reason, reason_fields
from serving.schemas import ScoreResult
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
