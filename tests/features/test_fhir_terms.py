from __future__ import annotations

from dataclasses import replace

from features.fhir_terms import RISK_DISPLAY, RISK_PROBABILITY, qualitative_risk
from features.outcomes import BAND_FHIR_RISK, FALLS


def test_each_band_is_coded_as_its_outcome_says() -> None:
    for band, code in BAND_FHIR_RISK:
        risk = qualitative_risk(band, FALLS)
        assert risk["text"] == f"carerisk band: {band}"
        assert risk["coding"] == [
            {"system": RISK_PROBABILITY, "code": code, "display": RISK_DISPLAY[code]}
        ]


def test_a_band_the_outcome_does_not_code_stays_text() -> None:
    uncoded = replace(FALLS, fhir_risk=(("low", "low"),))
    assert qualitative_risk("high", uncoded) == {"text": "carerisk band: high"}
