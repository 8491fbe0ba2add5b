"""`carerisk register` on a copy of the trained home: the same rows as the API's register for the
same role and top (one code path), the fire view without clinical detail, and one audit record."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from serving.audit import AuditLog
from tests import live
from tests.live import LiveService, carerisk
from tests.serving.builders import label_features

pytestmark = [pytest.mark.server, pytest.mark.slow]

FIRE_COLUMNS = [
    "rank", "person_id", "district", "practice_code", "band", "reasons", "could_be_acted_on",
    "model_name", "model_version", "index_date",
]  # fmt: skip


@pytest.fixture(scope="module")
def home_copy(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("register-cli") / "home"
    return live.copy_home(trained_home, copy)


def run_register(home: Path, role: str, top: int, out: Path) -> None:
    done = carerisk(home, "register", "--outcome", "falls", "--role", role, "--top", str(top),
                    "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def api_register(live_service: LiveService, role: str, top: int) -> str:
    with live_service.client(role) as client:
        response = client.get(
            "/v1/register", params={"outcome": "falls", "top": top, "format": "csv"}
        )
    assert response.status_code == 200, response.text[:300]
    return response.text


def test_fire_register_from_the_cli_equals_the_api(
    home_copy: Path, live_service: LiveService, tmp_path: Path
) -> None:
    audit = AuditLog.in_home(home_copy)
    before = audit.count()
    out = tmp_path / "fire.csv"
    run_register(home_copy, "fire", 20, out)
    text = out.read_text(encoding="utf-8")

    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == FIRE_COLUMNS and len(rows) == 20
    assert [int(r["rank"]) for r in rows] == list(range(1, 21))
    labels = [label for r in rows for label in filter(None, r["reasons"].split("; "))]
    assert labels, "the fire register should carry non-clinical reasons"
    for label in labels:
        found = label_features(label)
        assert found and not any(f.clinical for f in found), label

    assert text == api_register(live_service, "fire", 20)

    assert audit.count() == before + 1
    (record,) = audit.tail(1)
    assert (record.endpoint, record.role, record.status) == ("register", "fire", 200)
    assert list(record.person_ids) == [r["person_id"] for r in rows]
    assert audit.verify().ok


def test_gp_register_from_the_cli_equals_the_api(
    home_copy: Path, live_service: LiveService, tmp_path: Path
) -> None:
    out = tmp_path / "gp.csv"
    run_register(home_copy, "gp", 10, out)
    text = out.read_text(encoding="utf-8")
    assert "probability" in text.splitlines()[0]  # the clinical view, so the fire check can fail
    assert text == api_register(live_service, "gp", 10)
