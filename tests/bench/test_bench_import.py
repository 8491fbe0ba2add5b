"""The import bench's RESULTS.md section: a row per OMOP county and one for the FHIR fixture,
with the command and every import as run."""

from __future__ import annotations

from typing import Any

from bench.bench_import import section


def _measured(kind: str, people: int, read: int) -> dict[str, Any]:
    return {"import": kind, "command": f"python -m carerisk import {kind} SRC --out {people}",
            "seconds": 10.0, "cpu_seconds": 5.0, "rows_read": read, "rows_written": read - 1,
            "people": people, "rows_per_second": read // 10, "peak_rss_mib": 512.0,
            "synth_omop_seconds": 3.0, "synth_omop_peak_rss_mib": 256.0}  # fmt: skip


def test_every_county_and_the_fixture_are_in_the_section() -> None:
    results = {
        "machine": {"nproc": 2},
        "omop": [_measured("omop", 20_000, 646_594), _measured("omop", 600_000, 19_662_524)],
        "fhir": _measured("fhir", 40, 96_183),
    }
    text = section("python -m bench.bench_import --out X --people 20000 600000", results)
    assert "`python -m bench.bench_import --out X --people 20000 600000`" in text
    assert "| OMOP, a 600,000-person county" in text and "19,662,524" in text
    assert "| OMOP, a 20,000-person county" in text
    assert "| FHIR NDJSON, the 40-person PySynthea fixture | 96,183 |" in text
    assert "python -m carerisk import fhir SRC --out 40" in text
    assert "600,000 people 3.0 s, 256 MiB peak" in text
