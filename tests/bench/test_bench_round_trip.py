"""The round-trip bench's checks: the cohort and labels compared both ways, the direct set
with the import's missing features, and the features that still differ."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.bench_round_trip import (
    differing_features,
    relabelled,
    same_cohort,
    section,
    without_absent,
)
from features.feature_list import FEATURES


def _frame(people: list[str], labels: list[int], value: float = 1.0) -> pd.DataFrame:
    rows = {
        "person_id": people,
        "index_date": pd.Timestamp("2024-04-01"),
        "label": labels,
        "died_before_event": 0,
        "follow_up_days": 365,
    }
    feats = {
        f.name: (["a"] * len(people) if f.kind == "categorical" else [value] * len(people))
        for f in FEATURES
    }
    return pd.DataFrame({**rows, **feats}).astype(
        {f.name: "float64" for f in FEATURES if f.kind != "categorical"}
    )


def test_the_same_cohort_and_labels_are_found_the_same() -> None:
    a = _frame(["1", "2"], [0, 1])
    assert same_cohort(a, a.copy())["same"]


def test_extra_person_dates_and_lost_falls_are_counted() -> None:
    direct = _frame(["1", "2", "3"], [1, 1, 0])
    back = _frame(["1", "2", "3", "4"], [1, 0, 0, 1])
    found = same_cohort(direct, back)
    assert not found["same"]
    assert (found["only_back"], found["only_back_events"], found["only_direct"]) == (1, 1, 0)
    assert (found["events_lost"], found["events_gained"]) == (1, 0)
    assert found["events"] == {"direct": 2, "back": 2}


def test_relabelled_takes_the_import_features_on_the_direct_rows_and_labels() -> None:
    direct = _frame(["1", "2"], [1, 0], value=1.0)
    back = _frame(["0", "1", "2"], [0, 0, 1], value=2.0)
    out = relabelled(direct, back)
    assert out["person_id"].tolist() == ["1", "2"]
    assert out["label"].tolist() == [1, 0]
    numeric = [f.name for f in FEATURES if f.kind != "categorical"]
    assert (out[numeric] == 2.0).all().all()


def test_without_absent_sets_missing_only_the_named_features() -> None:
    direct = _frame(["1", "2"], [1, 0], value=1.0)
    back = _frame(["1", "2"], [1, 0], value=2.0)
    numeric = [f.name for f in FEATURES if f.kind != "categorical"]
    back[numeric[0]] = np.nan
    out = without_absent(direct, back, [numeric[0]])
    assert out[numeric[0]].isna().all()
    assert (out[numeric[1]] == 1.0).all()
    assert differing_features(out, direct) == {numeric[0]: 2}
    assert set(differing_features(out, back)) == set(numeric[1:])


def test_missing_equals_missing_and_a_dtype_change_is_named() -> None:
    a = _frame(["1", "2"], [0, 0])
    name = next(f.name for f in FEATURES if f.kind != "categorical")
    a[name] = np.nan
    assert differing_features(a, a.copy()) == {}
    b = a.copy()
    b[name] = b[name].astype("object")
    assert differing_features(a, b) == {f"{name} (dtype float64 v object)": 2}


def test_the_section_states_the_cohort_check_and_every_comparison() -> None:
    comparisons = [
        {"comparison": "import minus direct", "model": "LightGBM", "labels": "direct",
         "difference": -0.02, "interval": [-0.05, -0.003], "agree": False,
         "identical_risks": False},
    ]  # fmt: skip
    result = {
        "machine": {"nproc": 2},
        "seconds": 1.0,
        "index_dates": ["2024-04-01"],
        "index_dates_of_the_import": ["2024-04-01"],
        "cohort": {
            **same_cohort(_frame(["1"], [1]), _frame(["1", "2"], [0, 1])),
            "only_back_in_care_home": 1,
            "lost_with_ambulance_fall": 1,
        },
        "validation": {"direct": {"person_dates": 10, "events": 2}},
        "comparisons": comparisons,
        "absent_features": ["imd_decile"],
        "features_differing": {"falls_365d": 3},
    }
    text = section("python -m bench.bench_round_trip --out X", result)
    assert "same cohort and labels: no" in text
    assert "1 falls are lost (1 of them with an ambulance fall call-out" in text
    assert "1 of them in residential or nursing care" in text
    assert "-0.0200 (-0.0500 to -0.0030)" in text
    assert "imd_decile" in text and "falls_365d (3 rows)" in text
