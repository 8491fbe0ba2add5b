"""Import speed: OMOP (a county written with `synth --format omop`) and FHIR NDJSON (the
PySynthea fixture), rows read a second and peak RSS.

python -m bench.bench_import --out bench/out/import --people 20000

Each import is the real CLI in its own process (`python -m carerisk import omop|fhir ...`),
measured by os.wait4; the county is written first, by `synth --format omop`, and not timed
with the import. Rows read are the manifest's coverage counts, summed over the sources.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, machine, print_json, run_measured, shell_text

FHIR_FIXTURE = REPO / "tests" / "importers" / "fhir" / "synthea40"


def _import(kind: str, source: Path, out: Path, *extra: str) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    command = [PYTHON, "-m", "carerisk", "import", kind, str(source), "--out", str(out), *extra]
    measured = run_measured([*command, "--json"]).check()
    manifest = measured.json()
    read = sum(c["read"] for c in manifest["coverage"]["sources"].values())
    return {
        "import": kind,
        "command": shell_text(command),
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "rows_read": read,
        "rows_written": sum(manifest["rows"].values()),
        "rows_per_second": round(read / measured.seconds),
        "peak_rss_mib": measured.peak_rss_mib,
    }


def run(out: Path, people: int, seed: int = 0) -> dict[str, Any]:
    county = out / "county"
    shutil.rmtree(county, ignore_errors=True)
    synth = [PYTHON, "-m", "carerisk", "synth", "--people", str(people), "--seed", str(seed),
             "--format", "omop", "--out", str(county), "--json"]  # fmt: skip
    written = run_measured(synth).check()
    return {
        "machine": machine(),
        "people": people,
        "synth_omop_seconds": written.seconds,
        "omop": _import(
            "omop", county / "omop.duckdb", out / "omop-extract", "--person-ids", "source-value"
        ),
        "fhir": _import("fhir", FHIR_FIXTURE, out / "fhir-extract"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print_json(run(args.out, args.people, args.seed))


if __name__ == "__main__":
    main()
