"""The national-size sequence from nothing: synth, load, features, sampled training, score-all,
store check and the service, each stage measured (wall, CPU, peak memory).

nice -n 10 .venv/bin/python -m bench.bench_national /work/bench-5m [--people 5000000]

FOLDER is the only place written: FOLDER/home is the carerisk home (its extract in
FOLDER/home/extract), FOLDER/stages/<stage>.json the measured result of each stage. Every stage
is its own child process (`python -m bench.bench_national FOLDER --stage NAME`), which runs the
real `carerisk` command as a grandchild measured by os.wait4 (bench.common.run_measured: peak
RSS of the largest process, user + system CPU) and by a sampler of the whole process tree's
summed RSS every 0.5 s. The stages run in order and the sequence stops at the first that fails.
A stage whose result file says it passed is not run again, so a sequence that was stopped
goes on where it stopped; `--fresh` empties FOLDER first. At the end the bench writes its
section of bench/RESULTS.md (between the national-bench markers) and FOLDER/national.json.

On a shared machine wall times are upper bounds; CPU time and peak memory are the firm figures
(the load average before and after each stage is recorded beside them).

python -m bench.bench_national FOLDER --spark-driver HOME [--spark-driver HOME2] measures, on a
copy of each trained home, the peak memory of `carerisk score-all --engine spark`'s driver (the
carerisk process alone) into FOLDER/spark-driver.json, which the RESULTS.md section then shows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from bench.bench_score_all import TreeSampler as ScoreAllSampler
from bench.common import (
    PYTHON,
    REPO,
    load_average,
    machine,
    markdown_table,
    run_measured,
    shell_text,
)
from bench.results import write_section

PEOPLE = 5_000_000
SEED = 0
# the negative fractions that matched full training at 600k (README, Training at national size)
FRACTIONS = {"falls": 0.3, "complex-dependency": 0.1}
GIB = 1024.0
# stage: (wall seconds, peak MiB) targets; None where the issue sets none
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "synth": (None, None),
    "load": (20 * 60, 12 * GIB),
    "features": (None, None),
    "train-falls": (20 * 60, 20 * GIB),
    "train-complex-dependency": (20 * 60, 20 * GIB),
    "score-all": (20 * 60, None),
    "store-check": (None, None),
    "serve": (None, None),
}
STAGES = tuple(TARGETS)
CHUNK_PEOPLE = 50_000  # synthetic.CountyConfig's chunk_people default
LIMIT_MIB = 20 * GIB  # a stage without a memory target is ended above this (the training target)
RESULTS_MD = REPO / "bench" / "RESULTS.md"


class TreeSampler(ScoreAllSampler):
    """The largest summed RSS of this process's descendants, sampled in a thread. It ends them
    (and says why) when they pass `limit_bytes` or the machine's available memory falls under
    `floor_bytes`: other people's work shares this machine."""

    def __init__(self, limit_bytes: float, floor_bytes: float = 1.5 * 2**30) -> None:
        super().__init__(interval=0.5)
        self.limit_bytes, self.floor_bytes = limit_bytes, floor_bytes
        self.stopped_because: str | None = None

    def after_sample(self, family: list[psutil.Process], total: int) -> bool:
        available = psutil.virtual_memory().available
        if total <= self.limit_bytes and available >= self.floor_bytes:
            return False
        self.stopped_because = (
            f"ended by the bench at {total / 2**20:,.0f} MiB (limit "
            f"{self.limit_bytes / 2**20:,.0f} MiB; machine available "
            f"{available / 2**20:,.0f} MiB)"
        )
        for proc in family:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return True


def home_of(folder: Path) -> Path:
    return folder / "home"


def stage_path(folder: Path, stage: str) -> Path:
    return folder / "stages" / f"{stage}.json"


def cli(folder: Path) -> list[str]:
    return [PYTHON, "-m", "carerisk", "--home", str(home_of(folder))]


def limit_mib(stage: str) -> float:
    """The memory a stage may use before the bench ends it: its target, else LIMIT_MIB."""
    return TARGETS.get(stage, (None, None))[1] or LIMIT_MIB


class Stopped(Exception):
    """The bench was told to stop (SIGTERM) while a stage ran."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped


def stopped_result(stage: str, command: list[str], began: float, sampler: TreeSampler,
                   before: str) -> dict[str, Any]:  # fmt: skip
    """What a stage had done when it was stopped: its CPU so far (read before its processes
    are ended), wall time and peak memory, then its processes ended."""
    import time

    import psutil

    family = psutil.Process().children(recursive=True)
    cpu = 0.0
    for proc in family:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            cpu += times.user + times.system
    for proc in family:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(family, timeout=30)
    return {
        "stage": stage, "command": shell_text(command), "ok": False, "returncode": None,
        "stopped": f"stopped by the operator after {time.perf_counter() - began:,.0f} s "
        "(the bench was sent SIGTERM), before the stage finished",
        "seconds": round(time.perf_counter() - began, 2), "cpu_seconds": round(cpu, 2),
        "peak_rss_mib": None, "peak_tree_rss_mib": round(sampler.peak_bytes / 2**20, 1),
        "load_average_before": before, "load_average_after": load_average(),
    }  # fmt: skip


def measured_command(stage: str, command: list[str]) -> dict[str, Any]:
    """Run one carerisk command, measured; its JSON summary kept when it printed one. When the
    bench is stopped meanwhile, what the command had done so far."""
    import time

    before, began = load_average(), time.perf_counter()
    with TreeSampler(limit_mib(stage) * 2**20) as sampler:
        try:
            measured = run_measured(command)
        except Stopped:
            return stopped_result(stage, command, began, sampler, before)
    result: dict[str, Any] = {
        "stage": stage,
        "command": shell_text(command),
        "ok": measured.returncode == 0,
        "returncode": measured.returncode,
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "peak_rss_mib": measured.peak_rss_mib,
        "peak_tree_rss_mib": round(sampler.peak_bytes / 2**20, 1),
        "load_average_before": before,
        "load_average_after": load_average(),
    }
    if sampler.stopped_because:
        result["stopped"] = sampler.stopped_because
    if measured.returncode != 0:
        result["stderr_tail"] = measured.stderr[-3000:]
    else:
        try:
            result["summary"] = measured.json()
        except ValueError:
            result["summary"] = None
    return result


def run_synth(folder: Path, people: int) -> dict[str, Any]:
    home = home_of(folder)
    home.mkdir(parents=True, exist_ok=True)
    out = home / "extract"
    if out.exists():
        shutil.rmtree(out)
    command = [*cli(folder), "synth", "--people", str(people), "--seed", str(SEED),
               "--out", str(out), "--json"]  # fmt: skip
    result = measured_command("synth", command)
    if not result["ok"]:  # how far it got: the generator writes one scratch file per chunk
        chunks = len(list((out / ".scratch" / "outcomes").glob("run_*.parquet")))
        result["chunks_written"] = f"{chunks} chunk(s) of {CHUNK_PEOPLE:,} people"
    return result


def run_load(folder: Path) -> dict[str, Any]:
    store = home_of(folder) / "store.duckdb"
    for stale in (store, store.with_name(store.name + ".wal")):
        stale.unlink(missing_ok=True)
    return measured_command("load", [*cli(folder), "load", str(home_of(folder) / "extract"),
                                     "--json"])  # fmt: skip


def run_features(folder: Path) -> dict[str, Any]:
    return measured_command("features", [*cli(folder), "features", "--json"])


def run_train(folder: Path, outcome: str) -> dict[str, Any]:
    """Sampled training, then the gate (score-all needs champions); both measured."""
    train = [*cli(folder), "train", "--outcome", outcome,
             "--sample-negatives", str(FRACTIONS[outcome]), "--json"]  # fmt: skip
    result = measured_command(f"train-{outcome}", train)
    if result["ok"]:
        promote = measured_command("promote", [*cli(folder), "promote", "--outcome", outcome,
                                               "--json"])  # fmt: skip
        result["promote"] = promote
        result["ok"] = promote["ok"]
    return result


def run_score_all(folder: Path) -> dict[str, Any]:
    return measured_command("score-all", [*cli(folder), "score-all", "--engine", "duckdb",
                                          "--json"])  # fmt: skip


def run_store_check(folder: Path) -> dict[str, Any]:
    return measured_command("store-check", [*cli(folder), "store", "check", "--json"])


SERVE_SECONDS = 20.0
SERVE_WORKERS = 2
CLIENTS = 8
# RSS per worker at 600k, bench.bench_serve_scale (an earlier run: 571 and 578 MiB)
REFERENCE_RSS_MIB = 578.0


def _people_spread(ids: list[str], count: int) -> list[str]:
    """`count` ids spread over the cohort (the requests cycle through them)."""
    step = max(len(ids) // count, 1)
    return ids[::step][:count]


def run_serve(folder: Path) -> dict[str, Any]:
    """The service on the national home: ready time, RSS per worker, one person per request
    at 8 clients (p50, p99, requests a second, the clients' CPU per request), and the same
    requests to `mlflow models serve` on the same champion, in the same run."""
    import time

    from bench.bench_serve_scale import workers_rss
    from bench.bench_serving import (
        BODIES,
        FAST,
        add_keys,
        carerisk_calls,
        falls_people,
        mlflow_calls,
        mlflow_service,
        model_matrix,
        run_load,
        summarise,
    )  # fmt: skip
    from tests.live import LiveService, free_port

    home = home_of(folder)
    cohort = falls_people(home)
    ids, keys = _people_spread(cohort, BODIES), add_keys(home, 64)
    before = load_average()
    service = LiveService(home)
    began = time.perf_counter()
    service.start("--workers", str(SERVE_WORKERS), *FAST, timeout=3600)
    ready = round(time.perf_counter() - began, 1)
    try:
        assert service.process is not None
        calls = carerisk_calls(service.url, keys, ids, 1)
        run_load(calls, 2, 2.0)  # warm up
        ours = summarise("carerisk", "single", CLIENTS, run_load(calls, CLIENTS, SERVE_SECONDS), 1)
        rss = workers_rss(service.process.pid)
    finally:
        service.stop()
    columns, matrix = model_matrix(home, ids)
    with mlflow_service(home, free_port(), SERVE_WORKERS) as url:
        peer_calls = mlflow_calls(url, columns, matrix, 1)
        run_load(peer_calls, 2, 2.0)
        peer = summarise("mlflow", "single", CLIENTS, run_load(peer_calls, CLIENTS, SERVE_SECONDS),
                         1)  # fmt: skip
    spread = (max(rss) - REFERENCE_RSS_MIB) / REFERENCE_RSS_MIB if rss else None
    return {
        "stage": "serve", "ok": bool(rss) and ours.errors == 0, "command": "carerisk serve "
        f"--workers {SERVE_WORKERS} (tests.live.LiveService), {CLIENTS} clients, "
        f"{SERVE_SECONDS:.0f} s each", "falls_cohort": len(cohort),
        "service_ready_s": ready, "seconds": ready, "cpu_seconds": None,
        "peak_rss_mib": max(rss) if rss else None, "peak_tree_rss_mib": None,
        "worker_rss_mib": rss, "reference_rss_mib_600k": REFERENCE_RSS_MIB,
        "rss_vs_600k": None if spread is None else round(spread, 3),
        "rss_within_20pct": spread is not None and abs(spread) <= 0.20,
        "carerisk": asdict(ours), "mlflow": asdict(peer),
        "throughput_ratio": round(ours.requests_per_s / max(peer.requests_per_s, 1e-9), 2),
        "load_average_before": before, "load_average_after": load_average(),
    }  # fmt: skip


def run_stage(folder: Path, stage: str, people: int) -> dict[str, Any]:
    if stage == "synth":
        return run_synth(folder, people)
    if stage == "load":
        return run_load(folder)
    if stage == "features":
        return run_features(folder)
    if stage.startswith("train-"):
        return run_train(folder, stage.removeprefix("train-"))
    if stage == "score-all":
        return run_score_all(folder)
    if stage == "store-check":
        return run_store_check(folder)
    if stage == "serve":
        return run_serve(folder)
    raise SystemExit(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")


def stage_child(folder: Path, stage: str, people: int) -> None:
    """Run one stage and write its result file (in a process of its own)."""
    import signal

    signal.signal(signal.SIGTERM, _raise_stopped)
    result = {"people": people, **run_stage(folder, stage, people)}
    path = stage_path(folder, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "summary"}, default=str))


def passed(folder: Path, stage: str) -> bool:
    path = stage_path(folder, stage)
    return path.exists() and bool(json.loads(path.read_text()).get("ok"))


def sequence(folder: Path, people: int) -> list[dict[str, Any]]:
    """Every stage in order, each in a child process; stops at the first that fails."""
    import signal
    import subprocess

    for stage in STAGES:
        if passed(folder, stage):
            print(f"{stage}: passed before, kept", flush=True)
            continue
        print(f"{stage}: running ({load_average()})", flush=True)
        command = [PYTHON, "-m", "bench.bench_national", str(folder), "--stage", stage,
                   "--people", str(people)]  # fmt: skip
        child = subprocess.Popen(command, cwd=REPO)
        try:
            child.wait()
        except Stopped:
            child.send_signal(signal.SIGTERM)  # it records what it had done, then ends
            child.wait()
            print(f"{stage}: stopped; see {stage_path(folder, stage)}", flush=True)
            break
        if not passed(folder, stage):
            print(f"{stage}: failed; see {stage_path(folder, stage)}", flush=True)
            break
    return collected(folder)


def collected(folder: Path) -> list[dict[str, Any]]:
    found = []
    for stage in STAGES:
        path = stage_path(folder, stage)
        if path.exists():
            found.append(json.loads(path.read_text()))
    return found


def _target_text(stage: str) -> str:
    seconds, mib = TARGETS.get(stage, (None, None))
    parts = []
    if seconds is not None:
        parts.append(f"< {seconds / 60:.0f} min")
    if mib is not None:
        parts.append(f"< {mib / GIB:.0f} GiB")
    return ", ".join(parts) or "-"


def _met(result: dict[str, Any]) -> str:
    seconds, mib = TARGETS.get(result["stage"], (None, None))
    if result.get("stopped"):
        return "stopped"
    if not result.get("ok"):
        return "failed"
    peak = max(result.get("peak_rss_mib") or 0, result.get("peak_tree_rss_mib") or 0)
    checks = []
    if seconds is not None:
        checks.append(result["seconds"] < seconds)
    if mib is not None:
        checks.append(peak < mib)
    if not checks:
        return "-"
    return "yes" if all(checks) else "NO"


def table(results: list[dict[str, Any]]) -> str:
    headers = ["stage", "wall s", "CPU s", "peak RSS MiB", "peak tree RSS MiB", "target", "met",
               "load average before / after"]  # fmt: skip
    rows = [
        [
            r["stage"],
            r.get("seconds"),
            r.get("cpu_seconds"),
            r.get("peak_rss_mib"),
            r.get("peak_tree_rss_mib"),
            _target_text(r["stage"]),
            _met(r),
            f"{r.get('load_average_before')} / {r.get('load_average_after')}",
        ]  # fmt: skip
        for r in results
    ]
    done = {r["stage"] for r in results}
    rows += [[s, "-", "-", "-", "-", _target_text(s), "not run", "-"] for s in STAGES
             if s not in done]  # fmt: skip
    return markdown_table(headers, rows)


def serve_text(results: list[dict[str, Any]]) -> str:
    """The service's figures in words (its row of the table holds ready time and RSS)."""
    found = [r for r in results if r["stage"] == "serve" and r.get("carerisk")]
    if not found:
        return "Service at this size: not measured (stage not reached)."
    r = found[0]
    ours, peer = r["carerisk"], r["mlflow"]
    return (
        f"Service ({r['falls_cohort']:,} people in the falls cohort): ready in "
        f"{r['service_ready_s']} s; RSS per worker {r['worker_rss_mib']} MiB against "
        f"{r['reference_rss_mib_600k']} MiB at 600k ({r['rss_vs_600k']:+.1%}; within 20%: "
        f"{'yes' if r['rss_within_20pct'] else 'NO'}). One person per request at {CLIENTS} "
        f"clients: p50 {ours['p50_ms']} ms, p99 {ours['p99_ms']} ms, {ours['requests_per_s']} "
        f"requests/s, clients' CPU {ours['client_cpu_ms']} ms a request; `mlflow models serve` "
        f"in the same run: p50 {peer['p50_ms']} ms, p99 {peer['p99_ms']} ms, "
        f"{peer['requests_per_s']} requests/s: ratio {r['throughput_ratio']}x (target 10x; "
        "p99 under 20 ms is judged on an idle machine only)."
    )


def spark_text(folder: Path) -> str:
    """The Spark driver's figures, when `--spark-driver` measured them into this folder."""
    path = folder / "spark-driver.json"
    if not path.exists():
        return "Spark score-all's driver: not measured into this folder."
    rows = [
        [
            r["home"],
            r["rows_scored"],
            r["seconds"],
            r["driver_peak_rss_mib"],
            r["tree_peak_rss_mib"],
            r["load_average"],
        ]  # fmt: skip
        for r in json.loads(path.read_text())
    ]
    headers = ["trained home", "scores written", "wall s", "driver peak RSS MiB",
               "tree peak RSS MiB", "load average"]  # fmt: skip
    return (
        "Spark score-all's driver (`python -m bench.bench_national FOLDER --spark-driver HOME "
        "...`; the driver is the carerisk process alone, Spark's JVM and workers apart):\n\n"
        + markdown_table(headers, rows)
    )


def section(folder: Path, people: int, results: list[dict[str, Any]]) -> str:
    commands = "\n".join(f"    {r['command']}" for r in results if r.get("command"))
    notes = "".join(
        f"- {r['stage']}: {r['stopped']}"
        + (f"; {r['chunks_written']} written by then" if r.get("chunks_written") else "")
        + ".\n"
        for r in results
        if r.get("stopped")
    )
    return (
        f"## National sequence ({people:,} people)\n\n"
        f"`nice -n 10 python -m bench.bench_national {folder} --people {people}` "
        f"(machine: {json.dumps(machine())})\n\n{table(results)}\n\n{notes}\n"
        f"{serve_text(results)}\n\n{spark_text(folder)}\n\n"
        f"Commands run, in order:\n\n{commands}\n\n"
        f"Each stage's full result: `{folder}/stages/<stage>.json`.\n"
    )


def write_results(folder: Path, people: int, results: list[dict[str, Any]]) -> None:
    write_section("national", section(folder, people, results), RESULTS_MD)
    (folder / "national.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


def spark_driver(source: Path, work: Path) -> dict[str, Any]:
    """`carerisk score-all --engine spark --outcome falls` on a copy of a trained home (in
    `work`/spark-driver-copy): the peak RSS of the driver (the carerisk Python process alone,
    sampled every 0.2 s; Spark's JVM and Python workers are its children and counted apart), of
    the whole tree, and wall time. Falls only, so that homes whose gate refused complex
    dependency can be measured too."""
    import subprocess
    import time

    import psutil

    from bench.common import child_env
    from tests.live import copy_home

    home = work / "spark-driver-copy"
    shutil.rmtree(home, ignore_errors=True)
    copy_home(source, home, "*.log", "serving")
    command = [*[PYTHON, "-m", "carerisk", "--home", str(home)], "score-all", "--engine",
               "spark", "--outcome", "falls", "--json"]  # fmt: skip
    began = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, text=True)
    driver, peak, tree = psutil.Process(child.pid), 0, 0
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, driver.memory_info().rss)
            family = [driver, *driver.children(recursive=True)]
            tree = max(tree, sum(p.memory_info().rss for p in family))
        time.sleep(0.2)
    out = child.stdout.read() if child.stdout else ""
    seconds = time.perf_counter() - began
    written = json.loads(out[out.index("{") :])["written"] if child.returncode == 0 else []
    shutil.rmtree(home, ignore_errors=True)
    return {
        "home": str(source), "ok": child.returncode == 0, "command": shell_text(command),
        "rows_scored": sum(int(w["rows"]) for w in written), "seconds": round(seconds, 1),
        "driver_peak_rss_mib": round(peak / 2**20, 1), "tree_peak_rss_mib": round(tree / 2**20, 1),
        "load_average": load_average(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path, help="the folder the run may use (created)")
    parser.add_argument("--people", type=int, default=PEOPLE)
    parser.add_argument("--stage", choices=STAGES, default=None, help="run this stage only")
    parser.add_argument("--fresh", action="store_true", help="empty FOLDER first")
    parser.add_argument("--no-results", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--spark-driver", type=Path, action="append", default=None,
                        help="a trained home: measure Spark score-all's driver on a copy of "
                        "it (in FOLDER), instead of the sequence")  # fmt: skip
    args = parser.parse_args()
    folder = args.folder.resolve()
    if args.spark_driver:
        folder.mkdir(parents=True, exist_ok=True)
        found = [spark_driver(h.resolve(), folder) for h in args.spark_driver]
        (folder / "spark-driver.json").write_text(json.dumps(found, indent=2) + "\n")
        print(json.dumps(found, indent=2))
        return
    if args.stage is not None:
        stage_child(folder, args.stage, args.people)
        return
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    import signal

    signal.signal(signal.SIGTERM, _raise_stopped)
    results = sequence(folder, args.people)
    if not args.no_results:
        write_results(folder, args.people, results)
    print(table(results))
    sys.exit(0 if len(results) == len(STAGES) and all(r.get("ok") for r in results) else 1)


if __name__ == "__main__":
    main()
