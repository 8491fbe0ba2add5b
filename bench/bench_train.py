"""Train each outcome from a home's store; wall time and peak RSS of the CLI process.

python -m bench.bench_train --home bench/out/home [--outcome falls] [--report] [--config F]

Runs `python -m carerisk --home H train --outcome O --no-report --json` (or `--report`) in
its own process, measured by os.wait4. Each run registers a challenger in the home's MLflow.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.common import PYTHON, print_json, run_measured, shell_text
from features.outcomes import PRODUCT

OUTCOMES = tuple(o.cli_name for o in PRODUCT)
TARGET_SECONDS = 300.0
TARGET_PEAK_MIB = 8 * 1024.0


def _summary(payload: dict[str, Any]) -> dict[str, Any]:
    """The few fields of the train command's JSON worth keeping next to the timing."""
    keep = ("outcome", "run_id", "version", "best_iteration", "split_sizes", "rows")
    out = {k: payload[k] for k in keep if k in payload}
    metrics = payload.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("model"), dict):
        out["auroc"] = metrics["model"].get("auroc")
    return out


def run_one(
    home: Path,
    outcome: str,
    report: bool = False,
    config: Path | None = None,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    command = [PYTHON, "-m", "carerisk", "--home", str(home), "train", "--outcome", outcome]
    command.append("--report" if report else "--no-report")
    if config is not None:
        command += ["--config", str(config)]
    command += extra or []
    measured = run_measured([*command, "--json"]).check()
    try:
        detail = _summary(measured.json())
    except ValueError:
        detail = {}
    return {
        "outcome": outcome,
        "report": report,
        "command": shell_text(command),
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "peak_rss_mib": measured.peak_rss_mib,
        "target_seconds": TARGET_SECONDS,
        "target_peak_rss_mib": TARGET_PEAK_MIB,
        "met": measured.seconds < TARGET_SECONDS and measured.peak_rss_mib < TARGET_PEAK_MIB,
        **detail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--outcome", choices=OUTCOMES, action="append")
    parser.add_argument("--report", action="store_true", help="also write the evaluation")
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args()
    outcomes = args.outcome or list(OUTCOMES)
    print_json([run_one(args.home, o, args.report, args.config) for o in outcomes])


if __name__ == "__main__":
    main()
