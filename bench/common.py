"""Shared benchmark helpers: run a measured child process, describe the machine, tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PYTHON = sys.executable
TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
}
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    """One finished child process: wall time, its peak RSS and what it printed."""

    command: list[str]
    seconds: float
    cpu_seconds: float  # user + system, of the child and its children: robust to shared cores
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The child's stdout parsed as JSON (the bench scripts print one JSON object)."""
        text = self.stdout
        return json.loads(text[text.index("{") :])

    def check(self) -> Measured:
        if self.returncode != 0:
            tail = self.stderr[-3000:]
            raise RuntimeError(f"{shell_text(self.command)} failed ({self.returncode}):\n{tail}")
        return self


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(TELEMETRY_OFF)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_measured(command: list[str], cwd: Path | None = None) -> Measured:
    """Run `command`, returning wall seconds and the peak RSS of it (and its children).

    os.wait4 gives the resource usage of exactly this child, so two children measured one
    after the other in the same parent report separate peaks.
    """
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    out_path, err_path = log_dir / f"bench-{stamp}.out", log_dir / f"bench-{stamp}.err"
    start = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd or REPO, env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    out_path.unlink()
    err_path.unlink()
    return Measured(
        command=list(command),
        seconds=round(seconds, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        peak_rss_mib=round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
    )


def shell_text(command: list[str]) -> str:
    """The command as a person would type it from the repository root."""
    parts = ["python" if part == PYTHON else part for part in command]
    return " ".join(parts)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return float("nan")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "nproc": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average": load_average(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table; cells are str()-ed and pipes escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def met(value: float, target: float, below: bool = True) -> str:
    """'yes' when value is under (or, with below=False, at least) the target."""
    ok = value < target if below else value >= target
    return "yes" if ok else "NO"


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))
