"""The demo's county ends on the last day of the month before today, so its first answers are
not stale; the tests' counties keep their fixed dates."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from carerisk.commands.demo import last_month_end
from tests.live import carerisk


def test_last_month_end() -> None:
    assert last_month_end(date(2026, 12, 7)) == date(2026, 11, 30)
    assert last_month_end(date(2027, 1, 1)) == date(2026, 12, 31)
    assert last_month_end(date(2024, 3, 31)) == date(2024, 2, 29)


@pytest.mark.slow  # two CLI calls, a county written
def test_synth_writes_a_county_ending_on_the_given_day(tmp_path: Path) -> None:
    out = tmp_path / "extract"
    result = carerisk(
        tmp_path, "synth", "--people", "300", "--out", str(out), "--end", "2026-11-30"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["start"], manifest["end"]) == ("2023-12-01", "2026-11-30")
    assert manifest["index_dates"][-1] == "2026-12-01"
    bad = carerisk(tmp_path, "synth", "--people", "300", "--out", str(out), "--end", "2026-11-15")
    assert bad.returncode != 0 and "end" in (bad.stdout + bad.stderr)
