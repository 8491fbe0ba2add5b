from __future__ import annotations

import datetime as dt

import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from codelists import CodeLists
from features import fhir_terms
from features.outcomes import COMPLEX_DEPENDENCY
from features.outcomes import FALLS as UNCODED_FALLS
from serving import fhir
from tests.emergency_outcome import EMERGENCY_ADMISSION
from tests.serving.builders import make_result

COMPUTED = dt.datetime(2025, 4, 2, 9, 30, tzinfo=dt.UTC)
# the falls outcome as the service holds it: with its codings from the packaged lists
FALLS = UNCODED_FALLS.with_codings(CodeLists.load())


@pytest.mark.parametrize("band", FALLS.bands.labels)
@pytest.mark.parametrize("notes", [[], ["GP data is 9 months old; the score may be out of date"]])
def test_valid_r4_risk_assessment_for_each_band(band, notes):
    doc = fhir.risk_assessment(make_result(band=band, notes=notes), FALLS, computed_at=COMPUTED)
    resource = RiskAssessment.model_validate(doc)
    assert resource.status == "final"
    prediction = doc["prediction"][0]
    expected = {"low": "low", "moderate": "moderate", "high": "high", "very high": "high"}[band]
    assert prediction["qualitativeRisk"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/risk-probability",
        "code": expected,
        "display": fhir_terms.RISK_DISPLAY[expected],
    }
    assert band in prediction["qualitativeRisk"]["text"]
    if notes:
        assert [n.text for n in resource.note or []] == notes
    else:
        assert "note" not in doc


def test_fields_follow_the_reference():
    doc = fhir.risk_assessment(make_result(), FALLS, computed_at=COMPUTED)
    assert doc["subject"]["identifier"] == {
        "system": "urn:carerisk:pseudonym",
        "value": "P0001234",
    }
    assert doc["subject"]["type"] == "Patient"
    assert doc["occurrenceDateTime"] == "2025-04-02T09:30:00+00:00"
    assert doc["method"]["coding"][0]["code"] == "carerisk-falls"
    assert doc["method"]["coding"][0]["version"] == "3"
    prediction = doc["prediction"][0]
    assert prediction["outcome"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "161898004", "display": "Falls"}
    ]
    assert prediction["whenPeriod"] == {"start": "2025-04-01", "end": "2026-04-01"}
    assert prediction["rationale"] == (
        "Main reasons: 2 falls in the last 12 months (raises risk); "
        "3 falls-risk medicines (raises risk); has a dementia diagnosis (raises risk)."
    )
    # modifiable factors that raise risk, nothing else
    assert doc["mitigation"] == (
        "Factors that can be acted on: 3 falls-risk medicines; no telecare alarm."
    )


def test_probability_is_a_documented_fraction():
    assert "fraction from 0 to 1" in (fhir.__doc__ or "")
    assert fhir.PROBABILITY_SCALE == "fraction 0-1"
    for p in (0.0, 0.23456, 1.0):
        doc = fhir.risk_assessment(make_result(probability=p), FALLS, computed_at=COMPUTED)
        value = doc["prediction"][0]["probabilityDecimal"]
        assert value == round(p, 4) and 0.0 <= value <= 1.0
        RiskAssessment.model_validate(doc)


def test_complex_dependency_is_text_only_and_no_reasons_is_valid():
    result = make_result(outcome="complex_dependency", reasons=[], rank=None)
    doc = fhir.risk_assessment(result, COMPLEX_DEPENDENCY, computed_at=COMPUTED)
    RiskAssessment.model_validate(doc)
    outcome = doc["prediction"][0]["outcome"]
    assert "coding" not in outcome and "Complex dependency" in outcome["text"]
    assert "rationale" not in doc["prediction"][0] and "mitigation" not in doc


def test_leap_day_and_naive_time():
    leap = make_result(index_date=dt.date(2024, 2, 29))
    period = fhir.risk_assessment(leap, FALLS, computed_at=COMPUTED)["prediction"][0]["whenPeriod"]
    assert period == {"start": "2024-02-29", "end": "2025-02-28"}
    with pytest.raises(ValueError, match="time zone"):
        fhir.risk_assessment(make_result(), FALLS, computed_at=dt.datetime(2025, 4, 2, 9, 30))


def test_an_outcomes_own_bands_and_text_come_from_its_definition():
    result = make_result(outcome=EMERGENCY_ADMISSION.name, band="middle")
    doc = fhir.risk_assessment(result, EMERGENCY_ADMISSION, computed_at=COMPUTED)
    RiskAssessment.model_validate(doc)
    prediction = doc["prediction"][0]
    assert prediction["outcome"] == {"text": "An emergency hospital admission within 12 months"}
    assert prediction["qualitativeRisk"] == {"text": "carerisk band: middle"}  # no FHIR code
