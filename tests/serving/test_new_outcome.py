"""A new outcome is one definition plus its label function: tests/emergency_outcome.py (an
emergency admission within 12 months, as SPARRA predicts), named in CARERISK_OUTCOME_MODULES,
is built into the snapshot, trained, gated, registered and served end to end, on a copy of the
demo home, by the real commands and a real server on loopback, with no other file edited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from evaluation.report import report_stem
from features.home import Home
from features.outcomes import PRODUCT
from tests import emergency_outcome, live
from tests.emergency_outcome import EMERGENCY_ADMISSION as NEW
from tests.live import ROOT, TEST_CONFIG, LiveService, carerisk, snapshot_people

pytestmark = [pytest.mark.server, pytest.mark.slow]

# the setting that registers the module, for every command and the server it starts
ENV = {"CARERISK_OUTCOME_MODULES": emergency_outcome.MODULE, "PYTHONPATH": str(ROOT)}


def run(home: Path, *args: str) -> dict[str, Any]:
    done = carerisk(home, *args, "--json", env=ENV)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo home with the new outcome in its snapshot, trained and promoted."""
    copy = tmp_path_factory.mktemp("new-outcome") / "home"
    live.copy_home(trained_home, copy)
    run(copy, "features")
    run(copy, "train", "--outcome", NEW.cli_name, "--config", str(TEST_CONFIG))
    verdict = run(copy, "promote", "--outcome", NEW.cli_name, "--config", str(TEST_CONFIG))
    assert verdict["promoted"] is True, verdict["reasons"]
    return copy


@pytest.fixture(scope="module")
def served(home: Path) -> Iterator[LiveService]:
    with LiveService(home, env=ENV).running() as service:
        yield service


def test_without_the_setting_the_outcome_is_unknown(home: Path) -> None:
    done = carerisk(home, "train", "--outcome", NEW.cli_name)
    assert done.returncode == 1
    assert "unknown outcome 'emergency-admission'; choose one of falls, complex-dependency" in (
        done.stdout + done.stderr
    )


def test_the_new_outcome_is_trained_and_registered(home: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=Home(home).default_tracking_uri)
    champion = client.get_model_version_by_alias(NEW.model_name, "champion")
    assert champion.tags["outcome"] == NEW.name
    stem = report_stem(NEW.model_name, f"run {champion.run_id[:8]}")
    assert stem == f"{NEW.model_name}-run-{champion.run_id[:8]}"
    assert (Home(home).reports_dir / f"{stem}.html").is_file()
    people = snapshot_people(home, [NEW, *PRODUCT])
    assert 0 < len(people["falls"]) < len(people[NEW.name])  # aged 16+ v 65+


def test_the_service_scores_the_new_outcome_with_its_own_bands(served: LiveService) -> None:
    people = snapshot_people(served.home, [NEW])[NEW.name]
    asked = people[:: max(1, len(people) // 40)][:40]
    with served.client("gp") as client:
        listed = client.get("/v1/outcomes").json()["outcomes"]
        response = client.post("/v1/score", json={"outcome": NEW.name, "person_ids": asked})
        fhir = client.post(
            "/v1/fhir/risk-assessment", json={"outcome": NEW.name, "person_id": asked[0]}
        )
        register = client.get("/v1/register", params={"outcome": NEW.name, "top": 20})
        spec = client.get("/v1/openapi.json").json()
    assert [o["name"] for o in listed] == [*PRODUCT.names(), NEW.name]
    assert (
        listed[-1]["bands"] == list(NEW.bands.labels) and listed[-1]["cohort"] == NEW.cohort.words
    )
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert [r["person_ref"] for r in results] == asked
    assert {r["model_name"] for r in results} == {NEW.model_name}
    assert {r["band"] for r in results} <= set(NEW.bands.labels)
    assert all(r["reasons"] for r in results)
    assert fhir.status_code == 200, fhir.text[:300]
    RiskAssessment.model_validate(fhir.json())
    assert register.status_code == 200 and len(register.json()["people"]) == 20
    enum = spec["components"]["schemas"]["ScoreRequest"]["properties"]["outcome"]["enum"]
    assert enum == [*PRODUCT.names(), NEW.name]


def test_outside_the_new_cohort_is_refused_with_its_words(served: LiveService) -> None:
    with duckdb.connect(str(Home(served.home).store_path), read_only=True) as con:
        row = con.execute(
            "SELECT person_id FROM feature_snapshot WHERE age_years < 16 ORDER BY 1 LIMIT 1"
        ).fetchone()
    assert row is not None, "the demo county should hold children"
    with served.client("gp") as client:
        refused = client.post("/v1/score", json={"outcome": NEW.name, "person_ids": [row[0]]})
    assert refused.status_code == 422
    assert refused.json()["message"] == NEW.outside_cohort()
