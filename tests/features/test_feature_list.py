from __future__ import annotations

import json
from dataclasses import replace

import pytest

from features import codes, feature_list
from features.feature_list import FEATURES, feature, feature_list_fingerprint, feature_names
from features.outcomes import PRODUCT


def test_names_are_unique_and_labels_take_a_value() -> None:
    names = feature_names()
    assert len(names) == len(set(names)) == len(FEATURES)
    for item in FEATURES:
        assert "{value}" in item.label, item.name
        assert item.describe(3)  # formats without error


def test_counts_of_one_are_worded_in_the_singular() -> None:
    counts = [f for f in FEATURES if f.label.startswith("{value} ") and f.kind == "numeric"]
    assert len(counts) >= 30
    for item in counts:
        assert item.label_one, f"{item.name} has no singular label"
        one, two = item.describe(1.0), item.describe(2)
        assert one.startswith("1 ") and two.startswith("2 "), item.name
        assert one[2:] != two[2:], f"{item.name}: the same words for 1 and 2"
        missing = item.label_missing or item.label.format(value="unknown")
        assert item.describe(None) == missing, item.name
    assert feature("falls_90d").describe(1) == "1 recorded fall in the last 3 months"
    assert feature("falls_90d").describe(3.0) == "3 recorded falls in the last 3 months"
    assert feature("home_care_hours_now").describe(1.5) == "1.50 hours of home care a week"


def test_missing_and_non_finite_values_are_worded_plainly() -> None:
    """never "unknown days since the last recorded fall", never
    "body mass index inf"."""
    assert feature("days_since_last_fall").describe(None) == "no recorded fall"
    assert feature("days_since_last_fall").describe("unknown") == "no recorded fall"
    assert feature("days_since_last_fall").describe(12.0) == "12 days since the last recorded fall"
    for value in (float("inf"), float("-inf"), float("nan"), None):
        for item in FEATURES:
            words = item.describe(value)
            assert "inf" not in words.split() and "nan" not in words.split(), (item.name, words)
            assert not words.startswith("unknown days since"), (item.name, words)
    assert feature("bmi").describe(float("inf")) == "no body mass index recorded"


def test_every_numeric_feature_has_a_plausible_range() -> None:
    """the request schema of POST /v1/score/records refuses values outside."""
    for item in FEATURES:
        if item.kind == "numeric":
            assert item.minimum is not None and item.maximum is not None, item.name
            assert item.minimum < item.maximum, item.name
            if item.window_days:
                assert item.maximum <= max(item.window_days, 100), item.name
    assert (feature("bmi").minimum, feature("bmi").maximum) == (10, 100)


def test_directions_use_known_outcomes_and_signs() -> None:
    for item in FEATURES:
        assert set(item.direction) <= set(PRODUCT.names()), item.name
        assert set(item.direction.values()) <= {-1, 0, 1}, item.name
        if item.constrain:
            assert item.kind != "categorical"
            assert any(item.direction_for(o) != 0 for o in PRODUCT.names()), item.name


def test_clinical_and_modifiable_flags_follow_the_brief() -> None:
    non_clinical = {"falls_365d", "lives_alone", "informal_carer", "home_care_now", "age_years",
                    "fire_trip_hazards", "fire_visited"}  # fmt: skip
    for name in non_clinical:
        assert feature(name).clinical is False, name
    for name in ("has_dementia", "medicines_90d", "emergency_admissions_365d", "efi"):
        assert feature(name).clinical is True, name
    for name in (
        "medicines_90d",
        "frid_opioids_90d",
        "fire_trip_hazards",
        "telecare_now",
        "lives_alone",
        "has_urinary_incontinence",
        "has_visual_impairment",
    ):
        assert feature(name).modifiable is True, name  # fmt: skip
    assert feature("age_years").modifiable is False
    assert feature("falls_365d").constrain and feature("falls_365d").direction_for("falls") == 1
    assert feature("age_years").constrain and feature("age_years").direction_for("falls") == 1
    assert feature("bmi").direction_for("falls") == -1


def test_every_condition_and_frid_class_has_a_feature() -> None:
    names = set(feature_names())
    assert {f"has_{c}" for c in codes.CONDITIONS} <= names
    assert {f"frid_{c}_90d" for c in codes.FRID_CLASSES} <= names
    assert feature("efi_band").categories == ("fit", "mild", "moderate", "severe")


def test_windows_and_sources_name_contract_tables() -> None:
    from features.contract import TABLE_NAMES

    for item in FEATURES:
        assert set(item.sources) <= set(TABLE_NAMES), item.name
    assert feature("ae_attendances_90d").window_days == 90
    assert feature("falls_730d").window_days == 730
    assert feature("has_dementia").window_days is None


def test_fingerprint_is_stable_and_changes_with_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = feature_list_fingerprint()
    assert first == feature_list_fingerprint() and len(first) == 64
    assert json.loads(feature_list.feature_list_json())[0]["name"] == FEATURES[0].name
    changed = (replace(FEATURES[0], label="age {value}"), *FEATURES[1:])
    monkeypatch.setattr(feature_list, "FEATURES", changed)
    assert feature_list_fingerprint() != first


def test_unknown_feature_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no feature named nope"):
        feature("nope")
