"""Serving applies the training cohorts, read from the snapshot that `write_snapshot` builds:
care-home residents and people who died on the index date get 422 for every outcome, with the
definition's words, are absent from registers and have no stored score."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from features.home import Home
from features.outcomes import COMPLEX_DEPENDENCY, FALLS, PRODUCT
from features.snapshot import read_snapshot_people, write_snapshot
from serving.objection_list import ObjectionList
from serving.scores_file import PROBABILITY
from serving.scoring import OutsideCohort, Scorer
from tests.features._records import ae, care, death, gp, make_store, person
from tests.live import LiveService
from tests.serving.exports import champions, scorer_over

D = date(2025, 4, 1)
# aged 65+ and in residential or nursing care at the snapshot's index date, by SQL of its own
CARE_HOME_RESIDENTS = """
SELECT DISTINCT s.person_id FROM feature_snapshot s JOIN social_care c USING (person_id)
WHERE c.service_type IN ('residential', 'nursing') AND c.start_date < s.index_date
  AND (c.end_date IS NULL OR c.end_date >= s.index_date) AND s.age_years >= 65
ORDER BY 1
"""


@pytest.fixture(scope="module")
def scorer(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    """The trained champions over a small county's snapshot, written by write_snapshot."""
    home = Home(tmp_path_factory.mktemp("cohorts"))
    old = date(1940, 5, 1)
    records = [
        person("ATHOME", born=old),
        ae("ATHOME", date(2024, 11, 3), cause="W19X"),
        person("INCARE", born=old),
        care("INCARE", "nursing", date(2023, 6, 1)),
        ae("INCARE", date(2024, 12, 1), cause="W19X"),
        person("DIEDON", born=old),
        gp("DIEDON", date(2024, 8, 1), "60621009", 24.0),
        death("DIEDON", D),
        person("ADULT1", born=date(1990, 2, 1)),
        ae("ADULT1", date(2025, 3, 31)),
    ]
    store = make_store(home.store_path, records)
    write_snapshot(store, D, PRODUCT)
    return scorer_over(
        home.scores_dir,
        read_snapshot_people(store),
        champions(trained_home),
        ObjectionList.load(home.objections_path),
    )


@pytest.mark.slow  # needs the trained home
@pytest.mark.parametrize("person_id", ["INCARE", "DIEDON"])
@pytest.mark.parametrize("outcome", PRODUCT.names())
def test_care_home_residents_and_deaths_on_the_day_are_refused(
    scorer: Scorer, person_id: str, outcome: str
) -> None:
    with pytest.raises(OutsideCohort) as refused:
        scorer.score_people(outcome, ["ATHOME", person_id])
    assert refused.value.status == 422
    assert refused.value.person_ids == [person_id]
    assert refused.value.message == PRODUCT.get(outcome).outside_cohort()
    _, ranked = scorer.ranked(outcome)
    assert person_id not in {r.person_ref for r in ranked}
    in_cohort, row = scorer.scores[outcome].people([person_id])[person_id]
    assert not in_cohort and row[PROBABILITY] is None  # no stored score


@pytest.mark.slow  # needs the trained home
def test_the_cohorts_follow_age_too(scorer: Scorer) -> None:
    assert scorer.score_people(FALLS.name, ["ATHOME"])[0].person_ref == "ATHOME"
    assert scorer.score_people(COMPLEX_DEPENDENCY.name, ["ADULT1"])[0].person_ref == "ADULT1"
    with pytest.raises(OutsideCohort, match="aged 65 or over"):
        scorer.score_people(FALLS.name, ["ADULT1"])
    _, ranked = scorer.ranked(COMPLEX_DEPENDENCY.name)
    assert sorted(r.person_ref for r in ranked) == ["ADULT1", "ATHOME"]


@pytest.mark.server
@pytest.mark.slow
def test_the_live_service_refuses_care_home_residents(live_service: LiveService) -> None:
    """The demo home's snapshot (written by `carerisk features`) holds care-home residents aged
    65 and over: POST /v1/score refuses them for both outcomes and no register lists them."""
    with duckdb.connect(str(Home(live_service.home).store_path), read_only=True) as con:
        residents = [row[0] for row in con.execute(CARE_HOME_RESIDENTS).fetchall()]
    assert residents, "the demo county should hold care-home residents aged 65 and over"
    asked = residents[:5]
    with live_service.client("gp") as client:
        for outcome in PRODUCT:
            response = client.post("/v1/score", json={"outcome": outcome.name, "person_ids": asked})
            assert response.status_code == 422, response.text[:300]
            body = response.json()
            assert body["error"] == "OutsideCohort" and body["person_ids"] == asked
            assert body["message"] == outcome.outside_cohort()
            register = client.get(
                "/v1/register", params={"outcome": outcome.name, "top": 5000, "format": "csv"}
            )
            assert register.status_code == 200 and len(register.text.splitlines()) > 10
            assert not any(p in register.text for p in residents)
        person = client.post("/v1/person", json={"person_id": residents[0]}).json()
    assert {o["error"] for o in person["outcomes"].values()} == {"outside_cohort"}
