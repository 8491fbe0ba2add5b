"""The monitor's statistics and verdicts on frames built here (evaluation/drift.py, monitor.py).

The store-backed monitor, with a real champion and its run, is tested in
tests/training/test_monitor_run.py.
"""

from __future__ import annotations

import json
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from evaluation.drift import (
    DriftLimits,
    ProfileError,
    chi_square_p,
    feature_drift,
    prediction_drift,
    psi,
    reference_profile,
)
from evaluation.monitor import (
    EXIT_CODES,
    MonitorInput,
    MonitorLimits,
    monitor,
    oe_interval,
    render_html,
    slope_interval,
    worst,
    write_monitor_report,
)
from features.bands import RiskBands
from features.feature_list import Feature
from features.new_codes import NewCodes

FEATURES = (
    Feature("age_years", "aged {value}", ("person",)),
    Feature("falls_365d", "{value} falls in the last 12 months", ("gp_event",)),
    Feature("lives_alone", "lives alone: {value}", ("person",), kind="binary"),
    Feature(
        "smoking",
        "smoking status {value}",
        ("gp_event",),
        kind="categorical",
        categories=("never", "ex", "current"),
    ),  # fmt: skip
    Feature("bmi", "BMI {value}", ("gp_event",)),
)
BANDS = RiskBands((0.1, 0.2), ("lower", "middle", "higher"))
REFERENCE_DAY = date(2024, 4, 1)


def people(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bmi = rng.normal(27, 4, n)
    bmi[rng.random(n) < 0.3] = np.nan
    return pd.DataFrame(
        {
            "person_id": [f"P{seed}{i:06d}" for i in range(n)],
            "age_years": rng.integers(65, 100, n).astype(float),
            "falls_365d": rng.poisson(0.3, n).astype(float),
            "lives_alone": (rng.random(n) < 0.35).astype(float),
            "smoking": rng.choice(["never", "ex", "current"], n, p=[0.6, 0.3, 0.1]),
            "bmi": bmi,
            "gp_system": rng.choice(["EMIS", "SystmOne", "Vision"], n, p=[0.5, 0.3, 0.2]),
            "district": rng.choice(["Malvern", "Redditch"], n),
        }
    )


def risk(frame: pd.DataFrame) -> np.ndarray:
    z = -4 + 0.04 * (frame["age_years"] - 65) + 0.8 * frame["falls_365d"]
    return 1 / (1 + np.exp(-z.to_numpy(float)))


# ---------------------------------------------------------------- statistics


def test_psi_is_zero_for_the_same_shares_and_grows_with_a_shift() -> None:
    base = np.array([100, 200, 300, 400])
    assert psi(base, base * 3) == pytest.approx(0.0, abs=1e-6)
    small, large = (
        psi(base, np.array([110, 200, 290, 400])),
        psi(base, np.array([400, 300, 200, 100])),
    )
    assert 0 < small < 0.1 < 0.25 < large
    assert chi_square_p(base, base * 3) == pytest.approx(1.0)
    assert chi_square_p(base, np.array([400, 300, 200, 100])) < 1e-10
    assert chi_square_p(np.array([5, 0]), np.array([7, 0])) == 1.0  # one level only


def test_an_undrifted_population_shows_no_shift() -> None:
    profile = reference_profile(people(4000, 1), FEATURES, REFERENCE_DAY)
    json.dumps(profile)  # JSON-ready, nothing about a person in it
    assert "P1" not in json.dumps(profile)
    drifts = feature_drift(profile, people(4000, 2), FEATURES, DriftLimits())
    assert max(d.psi for d in drifts) < 0.02
    assert not any(d.groups or d.new_levels for d in drifts)


def test_a_shift_in_age_and_a_new_code_are_found() -> None:
    profile = reference_profile(people(4000, 1), FEATURES, REFERENCE_DAY)
    now = people(4000, 2)
    now["age_years"] = (now["age_years"] + 8).clip(upper=104)
    now.loc[now.index[:200], "smoking"] = "vapes"  # a level training never saw
    drifts = {d.name: d for d in feature_drift(profile, now, FEATURES, DriftLimits())}
    assert drifts["age_years"].psi > 0.25 and drifts["age_years"].p_value < 1e-10
    assert drifts["falls_365d"].psi < 0.02
    assert drifts["smoking"].new_levels == {"vapes": 200}
    assert drifts["smoking"].new_share == pytest.approx(0.05)


def test_a_shift_within_one_gp_system_is_found_in_that_group() -> None:
    """Vision practices stop coding falls: too few people for the whole to move much, but
    their own group does."""
    before, now = people(6000, 1), people(6000, 2)
    before["falls_365d"] = np.random.default_rng(3).poisson(1.0, len(before)).astype(float)
    now["falls_365d"] = np.random.default_rng(4).poisson(1.0, len(now)).astype(float)
    vision = now["gp_system"] == "Vision"
    now.loc[vision, "falls_365d"] = 0.0
    profile = reference_profile(before, FEATURES, REFERENCE_DAY)
    drift = {d.name: d for d in feature_drift(profile, now, FEATURES, DriftLimits())}
    shifted = drift["falls_365d"]
    assert [(g.descriptor, g.group) for g in shifted.groups] == [("gp_system", "Vision")]
    assert not drift["age_years"].groups


def test_missing_values_shift() -> None:
    profile = reference_profile(people(4000, 1), FEATURES, REFERENCE_DAY)
    now = people(4000, 2)
    now.loc[now.index[:1200], "bmi"] = np.nan  # BMI no longer coded for many people
    bmi = {d.name: d for d in feature_drift(profile, now, FEATURES, DriftLimits())}["bmi"]
    assert bmi.missing_reference == pytest.approx(0.3, abs=0.03)
    assert bmi.missing_shift > 0.15 and bmi.missing_p_value < 1e-6


def test_a_profile_without_a_feature_is_refused() -> None:
    profile = reference_profile(people(500, 1), FEATURES[:2], REFERENCE_DAY)
    with pytest.raises(ProfileError, match="no feature lives_alone"):
        feature_drift(profile, people(500, 2), FEATURES, DriftLimits())
    with pytest.raises(ProfileError, match="format-1"):
        feature_drift({"format": 0}, people(500, 2), FEATURES, DriftLimits())


def test_prediction_drift_bands_and_mean() -> None:
    rng = np.random.default_rng(0)
    ref = rng.beta(2, 18, 5000)
    same = prediction_drift(ref, rng.beta(2, 18, 5000), BANDS.cuts, BANDS.labels)
    assert same.band_psi < 0.01 and abs(same.mean_change) < 0.03
    higher = prediction_drift(ref, rng.beta(4, 16, 5000), BANDS.cuts, BANDS.labels)
    assert higher.band_psi > 0.25 and higher.mean_change > 0.8
    assert sum(higher.current_bands) == 5000 and higher.bands == ["lower", "middle", "higher"]


def test_slope_and_observed_expected_intervals() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(2, 8, 20000)
    y = (rng.random(len(p)) < p).astype(int)
    slope, _ = slope_interval(y, p, 0.95)
    assert slope.lo < 1 < slope.hi and slope.hi - slope.lo < 0.2
    oe = oe_interval(y, p, 0.95)
    assert oe.lo < 1 < oe.hi
    too_extreme, _ = slope_interval(y, np.clip(p * 1.8 - 0.1, 0.001, 0.999), 0.95)
    assert too_extreme.hi < 1


def test_worst_verdict_and_exit_codes() -> None:
    assert worst([]) == "stable" and worst(["watch", "stable"]) == "watch"
    assert worst(["watch", "retrain", "stable"]) == "retrain"
    assert EXIT_CODES == {"stable": 0, "watch": 3, "retrain": 4}


# ---------------------------------------------------------------- the monitor


def monitor_input(
    now: pd.DataFrame, matured: pd.DataFrame | None = None, **kw: object
) -> MonitorInput:
    before = people(4000, 1)
    rng = np.random.default_rng(9)
    p_ref = risk(before)
    fields: dict[str, object] = {
        "outcome": "falls",
        "predicts": "a recorded fall within 12 months",
        "cohort": "aged 65 or over",
        "model_name": "carerisk-falls",
        "model_version": "3",
        "run_id": "0123456789abcdef",
        "snapshot_date": date(2025, 4, 1),
        "data_end": date(2025, 3, 31),
        "reference_date": REFERENCE_DAY,
        "features": FEATURES,
        "bands": BANDS,
        "horizon_months": 12,
        "profile": reference_profile(before, FEATURES, REFERENCE_DAY),
        "current": now,
        "p_current": risk(now),
        "y_reference": (rng.random(len(p_ref)) < p_ref).astype(int),
        "p_reference": p_ref,
        "matured": pd.DataFrame() if matured is None else matured,
    }
    fields.update(kw)
    return MonitorInput(**fields)  # type: ignore[arg-type]


def matured_scores(n: int, seed: int, honest: bool = True) -> pd.DataFrame:
    frame = people(n, seed)
    p = risk(frame)
    y = (np.random.default_rng(seed + 1).random(n) < p).astype(int)
    served = p if honest else 1 - p  # scores that rank people backwards
    return pd.DataFrame(
        {
            "snapshot_date": date(2024, 1, 1),
            "person_id": frame["person_id"],
            "probability": served,
            "band": BANDS.band(served),
            "model_version": "3",
            "label": y,
            "died_before_event": 0,
            "age_band": np.where(frame["age_years"] >= 80, "80+", "65-79"),
            "sex": np.random.default_rng(seed).choice(["F", "M"], n),
            "gp_system": frame["gp_system"],
        }
    )


def test_the_monitor_is_quiet_on_an_undrifted_cohort() -> None:
    result = monitor(monitor_input(people(4000, 2), matured_scores(6000, 7)), MonitorLimits())
    assert result.verdict == "stable", [r.text for r in result.reasons]
    assert result.exit_code == 0
    assert result.performance is not None and result.performance.n == 6000
    assert result.performance.auroc.lo < result.performance.validation["auroc"] + 0.05
    assert len(result.by_snapshot) == 1 and result.by_snapshot["n"].iloc[0] == 6000


@pytest.mark.slow  # several monitor runs
def test_the_monitor_judges_calibration_by_the_gates_rule() -> None:
    """Matured scores a third too low: observed/expected about 1.5, which the gate's rule
    refuses, so the monitor says retrain; the same scores at their true level pass."""
    matured = matured_scores(6000, 7)
    low = matured.assign(probability=matured["probability"] * 0.67)
    result = monitor(monitor_input(people(4000, 2), low), MonitorLimits())
    texts = [r.text for r in result.reasons if r.level == "retrain" and r.area == "performance"]
    assert any("observed / expected" in t and "outside 0.85 to 1.18" in t for t in texts), texts
    quiet = monitor(monitor_input(people(4000, 2), matured), MonitorLimits())
    assert not [r for r in quiet.reasons if "observed / expected" in r.text]


def test_the_monitor_flags_a_drifted_cohort_and_scores_that_failed() -> None:
    now = people(4000, 2)
    now["age_years"] = now["age_years"] + 8
    codes = [NewCodes("gp_event", "snomed_code", 5000, {"1912003": 120})]
    result = monitor(
        monitor_input(now, matured_scores(6000, 7, honest=False), new_codes=codes),
        MonitorLimits(),
    )
    assert result.verdict == "retrain" and result.exit_code == 4
    areas = {(r.level, r.area) for r in result.reasons}
    assert ("retrain", "data") in areas  # age
    assert ("watch", "feed") in areas  # the new code
    assert ("retrain", "performance") in areas  # AUROC far below validation
    assert any("aged" in r.text and "PSI" in r.text for r in result.reasons)
    assert result.reasons[0].level == "retrain"  # the most serious first


def test_without_a_profile_the_data_are_not_checked_and_that_is_said() -> None:
    result = monitor(monitor_input(people(4000, 2), profile=None), MonitorLimits())
    assert result.features is None and result.verdict == "watch"
    assert "logged no reference profile" in result.reasons[0].text
    assert "No score of this version" in " ".join(result.notes)


def test_other_versions_matured_scores_are_shown_not_judged() -> None:
    old = matured_scores(3000, 7, honest=False).assign(model_version="2")
    result = monitor(monitor_input(people(4000, 2), old), MonitorLimits())
    assert result.performance is None and result.verdict == "stable"
    assert list(result.by_snapshot["model_version"]) == ["2"]
    assert any("other versions" in n for n in result.notes)


def test_the_report_is_self_contained_html_and_strict_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    now = people(4000, 2)
    now["age_years"] = now["age_years"] + 8
    result = monitor(monitor_input(now, matured_scores(6000, 7)), MonitorLimits())
    html_path, json_path = write_monitor_report(result, tmp_path)
    assert html_path.name == "carerisk-falls-v3-monitor-2025-04-01.html"
    html = html_path.read_text()
    assert "<script" not in html and not re.search(r"(src|href)=\"https?:", html)
    assert html.count("data:image/png;base64,") >= 3
    assert "Retrain." in html and "aged" in html
    payload = json.loads(json_path.read_text())
    assert payload["verdict"] == "retrain" and payload["exit_code"] == 4
    assert payload["performance"]["n"] == 6000
    assert render_html(result) == html


def test_the_monitor_leaves_out_a_descriptor_the_champions_source_did_not_supply() -> None:
    record = {"not_supplied": {"person": ["gp_system"]}, "missing_descriptors": ["gp_system"]}
    inp = monitor_input(people(4000, 2), matured_scores(6000, 7), coverage=record)
    result = monitor(inp, MonitorLimits())
    assert result.performance is not None and result.performance.fairness is not None
    fairness = result.performance.fairness
    assert "gp_system" not in set(fairness.table["descriptor"])
    assert fairness.left_out == {
        "gp_system": "left out: the source does not supply person.gp_system"
    }
    assert "Not tabled: gp_system (left out: the source does not supply" in render_html(result)
