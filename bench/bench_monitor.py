"""The monthly cycle's stages on a trained home; the target is the monitor under two
minutes at 600,000 people.

python -m bench.bench_monitor --home H [--promote-config config/demo.toml] [--earlier 2024-04-01]

H is a home whose challengers are trained (bench.bench_quality leaves one: synth, load,
train). Without champions the challengers are promoted first through the real gate with
`--promote-config` (its verdict printed). Then each stage is the real CLI in its own process,
measured by os.wait4: the snapshot (`carerisk features`), the scores of everyone in each
cohort (`carerisk score-all`), and `carerisk monitor --no-log --json` for every champion:
data drift against the validation date, prediction drift and realised performance. With
`--earlier D` the champions first score a snapshot at D (12 months or more before the data end),
so the monitor also joins those scores to their matured outcomes, as it does every month.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.common import PYTHON, machine, met, print_json, run_measured, shell_text
from features.outcomes import PRODUCT

TARGET_MONITOR_SECONDS = 120.0


def _stage(name: str, command: list[str], allowed: tuple[int, ...] = (0,)) -> dict[str, Any]:
    measured = run_measured(command)
    if measured.returncode not in allowed:
        measured.check()
    return {
        "stage": name,
        "command": shell_text(command),
        "exit_status": measured.returncode,
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "peak_rss_mib": measured.peak_rss_mib,
        "output": measured.json() if "--json" in command else None,
    }


def promote(cli: list[str], config: Path) -> list[dict[str, Any]]:
    """The gate's verdict for each outcome's challenger (a champion already there stays)."""
    done = []
    for outcome in PRODUCT:
        command = [*cli, "promote", "--outcome", outcome.cli_name, "--config", str(config)]
        done.append(_stage(f"promote {outcome.cli_name}", [*command, "--json"], (0, 1)))
    return done


def run(home: Path, promote_config: Path | None, earlier: str | None) -> dict[str, Any]:
    cli = [PYTHON, "-m", "carerisk", "--home", str(home)]
    stages = promote(cli, promote_config) if promote_config else []
    if earlier:
        stages.append(_stage("earlier snapshot", [*cli, "features", "--index-date", earlier]))
        stages.append(_stage("earlier scores", [*cli, "score-all", "--json"]))
    stages.append(_stage("snapshot", [*cli, "features", "--json"]))
    stages.append(_stage("scores", [*cli, "score-all", "--json"]))
    monitor = _stage("monitor", [*cli, "monitor", "--no-log", "--json"], (0, 3, 4))
    stages.append(monitor)
    return {
        "home": str(home),
        "stages": stages,
        "monitor_seconds": monitor["seconds"],
        "target_monitor_seconds": TARGET_MONITOR_SECONDS,
        "met": met(monitor["seconds"], TARGET_MONITOR_SECONDS),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--promote-config", type=Path, default=None)
    parser.add_argument("--earlier", default=None, help="YYYY-MM-DD: a snapshot scored first")
    args = parser.parse_args()
    print_json(run(args.home, args.promote_config, args.earlier))


if __name__ == "__main__":
    main()
