"""Generate and load a county; wall time, rows per second and peak RSS per stage.

python -m bench.bench_synth_load --home bench/out/home --people 600000

Each stage is the real CLI in its own process (`python -m carerisk --home H synth ...`,
`python -m carerisk --home H load DIR`), measured by os.wait4.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from bench.common import PYTHON, print_json, run_measured, shell_text
from features.home import Home

TARGET_SECONDS = 300.0  # generate and load, together
TARGET_PEAK_MIB = 6 * 1024.0


def _stage(name: str, command: list[str], rows_key: str) -> dict[str, Any]:
    measured = run_measured(command).check()
    summary = measured.json()
    rows = int(summary["total_rows"] if rows_key == "total_rows" else summary["totals"][rows_key])
    return {
        "stage": name,
        "command": shell_text(command),
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "rows": rows,
        "rows_per_second": round(rows / measured.seconds),
        "peak_rss_mib": measured.peak_rss_mib,
        "reported_seconds": summary.get("seconds"),
    }


def run(home: Path, people: int, seed: int = 0) -> dict[str, Any]:
    """Generate `people` into the home's extract folder and load it into its store (fresh)."""
    layout = Home(home)
    extract, store = layout.extract_dir, layout.store_path
    for stale in (extract, store, store.with_name(store.name + ".wal")):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    home.mkdir(parents=True, exist_ok=True)
    cli = [PYTHON, "-m", "carerisk", "--home", str(home)]
    synth = cli + ["synth", "--people", str(people), "--seed", str(seed), "--out", str(extract)]
    stages = [
        _stage("synth", [*synth, "--json"], "total_rows"),
        _stage("load", [*cli, "load", str(extract), "--json"], "rows_loaded"),
    ]
    total = sum(s["seconds"] for s in stages)
    peak = max(s["peak_rss_mib"] for s in stages)
    return {
        "people": people,
        "stages": stages,
        "total_seconds": round(total, 2),
        "peak_rss_mib": peak,
        "target_seconds": TARGET_SECONDS,
        "target_peak_rss_mib": TARGET_PEAK_MIB,
        "met": total < TARGET_SECONDS and peak < TARGET_PEAK_MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--people", type=int, default=600_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print_json(run(args.home, args.people, args.seed))


if __name__ == "__main__":
    main()
