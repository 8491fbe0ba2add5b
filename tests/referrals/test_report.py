"""The referral report: counts by band and district, and capacity against the people at risk."""

from __future__ import annotations

from referrals.report import AtRisk, referral_report
from referrals.store import ReferralStore, StatusChange
from tests.referrals.builders import FIRE, new, visit


def test_report_counts_by_band_and_district(store: ReferralStore) -> None:
    ids = [
        store.create(new("Pabcdef000001", band="high", district="Wyre")).id,
        store.create(new("Pabcdef000002", band="very high", district="Wyre")).id,
        store.create(new("Pabcdef000003", band="high", district="Malvern")).id,
    ]
    for referral_id in ids[:2]:
        store.move(referral_id, StatusChange(status="accepted"), FIRE)
        store.move(referral_id, visit(), FIRE)
    at_risk = AtRisk(("very high", "high"), {"Wyre": 40, "Malvern": 10}, 25, "homes")
    report = referral_report(store.find(), "falls", at_risk)
    assert report["referrals"]["total"] == 3
    assert report["referrals"]["by_band"] == {"high": 2, "very high": 1}
    assert report["referrals"]["by_district"] == {"Malvern": 1, "Wyre": 2}
    assert report["visits"]["by_district_and_band"] == [
        {"district": "Wyre", "band": "high", "count": 1},
        {"district": "Wyre", "band": "very high", "count": 1},
    ]
    assert report["findings"]["trip_hazards"]["total"] == 2
    assert report["findings"]["smoker"]["total"] == 0
    assert report["by_status"] == {"referred": 1, "visited": 2}
    capacity = report["capacity"]
    assert capacity["people_at_risk"] == 50 and capacity["months_to_visit_everyone_at_risk"] == 2.0
    assert capacity["by_district"][1] == {
        "district": "Wyre", "people_at_risk": 40, "visited": 2, "visits_last_30_days": 2,
    }  # fmt: skip
    assert referral_report(store.find(), "complex_dependency")["referrals"]["total"] == 0
