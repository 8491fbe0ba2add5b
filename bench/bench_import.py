"""Import speed: OMOP (a county written with `synth --format omop`) and FHIR NDJSON (the
PySynthea fixture), rows read a second and peak RSS; writes the `import` section of
bench/RESULTS.md.

python -m bench.bench_import --out /tmp/bench_import --people 20000 600000

Each import is the real CLI in its own process (`python -m carerisk import omop|fhir ...`),
measured by os.wait4; each county is written first, by `synth --format omop`, and not timed
with the import. Rows read are the manifest's coverage counts, summed over the sources.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, machine, markdown_table, print_json, run_measured, shell_text
from bench.results import RESULTS, write_section

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
        "people": manifest["rows"].get("person"),
        "rows_per_second": round(read / measured.seconds),
        "peak_rss_mib": measured.peak_rss_mib,
    }


def omop_county(out: Path, people: int, seed: int) -> dict[str, Any]:
    """A county of `people` written as OMOP (not timed with the import), then imported."""
    county = out / f"county-{people}"
    shutil.rmtree(county, ignore_errors=True)
    synth = [PYTHON, "-m", "carerisk", "synth", "--people", str(people), "--seed", str(seed),
             "--format", "omop", "--out", str(county), "--json"]  # fmt: skip
    written = run_measured(synth).check()
    result = _import(
        "omop", county / "omop.duckdb", out / f"omop-extract-{people}", "--person-ids",
        "source-value",
    )  # fmt: skip
    return {**result, "people": people, "synth_omop_seconds": written.seconds,
            "synth_omop_peak_rss_mib": written.peak_rss_mib}  # fmt: skip


def run(out: Path, sizes: list[int], seed: int = 0) -> dict[str, Any]:
    return {
        "machine": machine(),
        "omop": [omop_county(out, people, seed) for people in sizes],
        "fhir": _import("fhir", FHIR_FIXTURE.relative_to(REPO), out / "fhir-extract"),
    }


def _row(what: str, result: dict[str, Any]) -> list[Any]:
    return [what, f"{result['rows_read']:,}", f"{result['rows_written']:,}",
            f"{result['seconds']} s", f"{result['cpu_seconds']} s",
            f"{result['rows_per_second']:,}", f"{result['peak_rss_mib']:,.0f} MiB"]  # fmt: skip


def section(command: str, results: dict[str, Any]) -> str:
    """The `import` section: one row per OMOP county and one for the FHIR fixture."""
    rows = [
        _row(f"OMOP, a {r['people']:,}-person county written by `carerisk synth --format omop`", r)
        for r in results["omop"]
    ]
    fhir = results["fhir"]
    rows.append(_row(f"FHIR NDJSON, the {fhir['people']:,}-person PySynthea fixture", fhir))
    headers = ["import", "rows read", "contract rows written", "wall", "CPU",
               "rows a second (wall)", "peak memory"]  # fmt: skip
    imports = "\n".join(f"    {r['command']}" for r in [*results["omop"], results["fhir"]])
    synths = "; ".join(
        f"{r['people']:,} people {r['synth_omop_seconds']} s, "
        f"{r['synth_omop_peak_rss_mib']:,.0f} MiB peak"
        for r in results["omop"]
    )
    return (
        "## Import speed (bench/bench_import.py)\n\n"
        f"`{command}` (machine: {json.dumps(results['machine'])}). The machine is shared: "
        "read the CPU seconds; wall times are upper bounds. Each import is the CLI in its own "
        "process; peak memory is its peak RSS.\n\n"
        f"{markdown_table(headers, rows)}\n\n"
        f"Writing each county with `carerisk synth --format omop` (not timed with the import): "
        f"{synths}.\n\nThe imports, as run:\n\n{imports}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--people", type=int, nargs="+", default=[20_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the file to write into")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(args.out, args.people, args.seed)
    (args.out / "import.json").write_text(json.dumps(results, indent=2) + "\n")
    command = shell_text(["python", "-m", "bench.bench_import", *sys.argv[1:]])
    write_section("import", section(command, results), args.results)
    print_json(results)


if __name__ == "__main__":
    main()
