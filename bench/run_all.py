"""Run every benchmark in order on one generated county and write bench/RESULTS.md.

python -m bench.run_all [--people 600000] [--quick] [--with-report]

Order: generate + load, the feature snapshot, features against pandas,
training both outcomes, quality against the known risks on this realistic county and
on an additive county of the same size, promotion, TreeSHAP against shap, the fast
TreeSHAP against
pred_contrib, then the serving benchmark (`python -m bench.bench_serving --home H`,
written separately). Everything lives in bench/out/ (gitignored). --quick uses 20,000 people
and writes bench/out/RESULTS-quick.md, to check the script works; a full run writes
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import traceback
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from bench import bench_features, bench_synth_load, bench_train
from bench.common import (
    PYTHON,
    REPO,
    load_average,
    machine,
    markdown_table,
    met,
    run_measured,
    shell_text,
)
from bench.results import write_section
from features.home import Home
from features.outcomes import PRODUCT

OUT = REPO / "bench" / "out"
QUICK_PEOPLE = 20_000
QUICK_CONFIG = REPO / "tests" / "training-small.toml"  # --quick checks the script, quickly
INDEX_DATE = date(2024, 4, 1)
EXPLAIN_ROWS = 100_000
OUTCOMES = tuple(o.cli_name for o in PRODUCT)
HEADERS = ["measure", "figure", "target", "met?", "peer", "ratio", "command"]


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB ({value / 1024:.2f} GiB)"


def _s(value: float) -> str:
    return f"{value:,.1f} s"


def _wc(wall: float, cpu: float) -> str:
    """Wall time, with the CPU time (user + system) that does not depend on shared cores."""
    return f"{wall:,.1f} s (CPU {cpu:,.1f} s)"


class Suite:
    """Runs the steps, keeps going after a failure, and collects results and sections."""

    def __init__(self, home: Path, after_step: Callable[[Suite], None] | None = None) -> None:
        self.home = home
        self.results: dict[str, Any] = {}
        self.after_step = after_step  # e.g. rewrite RESULTS.md, so a stopped run keeps its figures

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        self.flush()  # the figures so far
        print(f"[bench] {name} (load average {load_average()})", flush=True)
        try:
            result = fn()
        except Exception:  # one failed benchmark must not lose the others' figures
            error = traceback.format_exc()
            print(error, flush=True)
            self.results[name] = {"error": error, "load_average_after": load_average()}
            result = None
        else:
            self.results[name] = {"result": result, "load_average_after": load_average()}
        return result

    def flush(self) -> None:
        if self.after_step is not None:
            self.after_step(self)

    def cli(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "carerisk", "--home", str(self.home), *args]


# --- the sections of RESULTS.md ----------------------------------------------------------------


def synth_load_section(r: dict[str, Any]) -> str:
    rows = []
    for s in r["stages"]:
        rows.append([f"{s['stage']}: wall time", _wc(s["seconds"], s["cpu_seconds"]),
                     "", "", "", "", s["command"]])  # fmt: skip
        rows.append([f"{s['stage']}: rows per second", f"{s['rows_per_second']:,}",
                     "", "", "", "", f"{s['rows']:,} rows"])  # fmt: skip
        rows.append([f"{s['stage']}: peak RSS", _mib(s["peak_rss_mib"]), "", "", "", "", ""])
    rows.append(["generate + load: total wall time", _s(r["total_seconds"]),
                 "< 300 s", "yes" if r["total_seconds"] < 300 else "NO", "", "", ""])  # fmt: skip
    cpu = sum(s.get("cpu_seconds", 0.0) for s in r["stages"])
    rows.append(["generate + load: total CPU time (user + system)", _s(cpu),
                 "< 300 s on 2 idle cores", "yes" if cpu < 300 else "NO", "", "",
                 "CPU time is what the cores did; wall time above includes waiting for "
                 "cores shared with other work"])  # fmt: skip
    rows.append(["generate + load: peak RSS (largest stage)", _mib(r["peak_rss_mib"]),
                 "< 6 GiB", "yes" if r["peak_rss_mib"] < 6144 else "NO", "", "", ""])  # fmt: skip
    title = f"## 1. Generate and load the county: {r['people']:,} people"
    return f"{title}\n\n{markdown_table(HEADERS, rows)}\n"


def features_section(r: dict[str, Any]) -> str:
    ours, peer = r["ours"], r["pandas"]
    ratio = r["ratio_pandas_over_ours"]
    rows = [
        ["compute_features (DuckDB) time, libraries imported before the clock for both",
         _wc(ours["seconds"], ours["cpu_seconds"]), "< 60 s",
         "yes" if ours["seconds"] < 60 else "NO",
         f"pandas {_wc(peer['seconds'], peer['cpu_seconds'])}",
         f"{ratio}x wall, {r['cpu_ratio_pandas_over_ours']}x CPU (target >= 5x: "
         f"{'yes' if ratio >= 5 else 'NO'})", ours["command"]],
        ["compute_features peak RSS (own process)", _mib(ours["process_peak_rss_mib"]),
         "< 4 GiB", "yes" if ours["process_peak_rss_mib"] < 4096 else "NO",
         f"pandas {_mib(peer['process_peak_rss_mib'])}",
         f"{peer['process_peak_rss_mib'] / ours['process_peak_rss_mib']:.2f}x", ""],
        ["whole process: interpreter, imports, computing, writing Parquet",
         _wc(ours["process_seconds"], ours["process_cpu_seconds"]), "", "",
         f"pandas {_wc(peer['process_seconds'], peer['process_cpu_seconds'])}",
         f"{r.get('process_ratio_pandas_over_ours', '?')}x wall", peer["command"]],
        ["values identical (assert_frame_equal, NaN == NaN)", str(r["identical"]), "True",
         "yes" if r["identical"] else "NO", "", "", ""],
    ]  # fmt: skip
    title = (
        f"## 2. Features at {r['index_date']}: {r['people']:,} people, "
        f"{r['features']} features, DuckDB vs plain pandas (bench/pandas_features.py)"
    )
    return f"{title}\n\n{markdown_table(HEADERS, rows)}\n"


def train_section(runs: list[dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        label = f"{r['outcome']} ({'with' if r['report'] else 'no'} report)"
        rows.append([f"train {label}: wall time", _wc(r["seconds"], r["cpu_seconds"]), "< 300 s",
                     "yes" if r["seconds"] < 300 else "NO", "", "", r["command"]])  # fmt: skip
        rows.append([f"train {label}: peak RSS", _mib(r["peak_rss_mib"]), "< 8 GiB",
                     "yes" if r["peak_rss_mib"] < 8192 else "NO", "", "",
                     f"AUROC {r.get('auroc', '?')}, rows {r.get('split_sizes', '?')}"])  # fmt: skip
    return f"## 3. Training\n\n{markdown_table(HEADERS, rows)}\n"


def quality_section(runs: list[dict[str, Any]]) -> str:
    """Quality against the known risks, per structure and outcome (bench/bench_quality.py)."""
    headers = ["structure", "outcome", "people (events)", "AUROC model", "baseline",
               "records reference", "truth", "LightGBM - baseline (95% interval)",
               "gap to reference", "slope", "O/E (95% interval)"]  # fmt: skip
    rows = []
    for run in runs:
        for outcome, q in run["quality"].items():
            a, (d, lo, hi), oe = q["auroc"], q["lightgbm_minus_baseline"], q["observed_expected"]
            rows.append([run["structure"], outcome, f"{q['people']:,} ({q['events']:,})",
                         a["model"], a["baseline"], a["records_reference"], a["truth"],
                         f"{d:+.4f} ({lo:+.4f} to {hi:+.4f})", q["gap"]["records_reference"],
                         q["calibration_slope"], f"{oe[0]} ({oe[1]} to {oe[2]})"])  # fmt: skip
    commands = "\n".join(f"- `{run['command']}`" for run in runs)
    return (
        f"## 3b. Quality against the known risks\n\n{markdown_table(headers, rows)}\n\n{commands}\n"
    )


def explain_section(r: dict[str, Any]) -> str:
    rows = [
        [f"ModelBundle.contributions ({r['rows']:,} rows, incl. encoding)",
         _wc(r["native_pred_contrib_s"], r["native_cpu_s"]), "", "",
         f"shap.TreeExplainer {_wc(r['shap_tree_explainer_s'], r['shap_cpu_s'])}",
         f"{r['ratio_shap_over_native']}x", r["command"]],
        ["pred_contrib on the same encoded matrix as shap", _s(r["native_on_encoded_matrix_s"]),
         "", "", "", f"{r['ratio_shap_over_native_same_matrix']}x", ""],
        ["max |difference| (values, base value)",
         f"{r['max_abs_difference']:.2e}, {r['max_abs_base_difference']:.2e}", "<= 1e-6",
         "yes" if r["agree"] else "NO", "", "", ""],
        ["peak RSS of the process", _mib(r["peak_rss_mib"]), "", "", "", "", ""],
    ]  # fmt: skip
    title = (
        f"## 4. Explanations: TreeSHAP, {r['outcome']} model ({r['trees']} trees, "
        f"{r['features']} features)"
    )
    return f"{title}\n\n{markdown_table(HEADERS, rows)}\n"


def treeshap_section(r: dict[str, Any]) -> str:
    rows = []
    for o in r["outcomes"]:
        fast, native = o["fast"], o["pred_contrib"]
        rows.append([f"{o['outcome']}: explanations per second ({o['rows']:,} rows, "
                     f"{o['threads']} threads, best of {o['repeats']})",
                     f"{fast['rows_per_second']:,} (CPU {fast['best_cpu_s']:,.2f} s)",
                     ">= 3x pred_contrib", met(o["speedup_wall"], 3, below=False),
                     f"pred_contrib {native['rows_per_second']:,} "
                     f"(CPU {native['best_cpu_s']:,.2f} s)",
                     f"{o['speedup_wall']}x wall, {o['speedup_cpu']}x CPU",
                     r["command"]])  # fmt: skip
        for size, b in o["small_batches"].items():
            rows.append([f"{o['outcome']}: one call on {size.split('_')[1]} row(s)",
                         f"{b['fast_us_per_call']:,} us", "", "",
                         f"pred_contrib {b['pred_contrib_us_per_call']:,} us",
                         f"{b['speedup']}x", ""])  # fmt: skip
        rows.append([f"{o['outcome']}: max |difference| (values, base value)",
                     f"{o['max_abs_difference']:.2e}, {o['max_abs_base_difference']:.2e}",
                     "<= 1e-9", "yes" if o["agree"] else "NO", "", "",
                     f"{o['trees']} trees, {o['leaves']} leaves, tables "
                     f"{o['tables_mib']} MiB"])  # fmt: skip
    for name, one in r["one_off_per_process"].items():
        rows.append([f"first explanation in a process ({name.replace('_', ' ')})",
                     _s(one["total_s"]), "", "", "", "",
                     f"build {one['build_s']} s, first calls "
                     f"{one['first_call_one_thread_s']} s (1 thread), "
                     f"{one['first_call_threads_s']} s (threads)"])  # fmt: skip
    rows.append(["peak RSS of the process", _mib(r["peak_rss_mib"]), "", "", "", "", ""])
    title = "## 4b. Fast exact TreeSHAP (models/treeshap.py) against pred_contrib"
    return f"{title}\n\n{markdown_table(HEADERS, rows)}\n"


def measured_section(title: str, runs: list[dict[str, Any]]) -> str:
    rows = [[r["name"], _wc(r["seconds"], r["cpu_seconds"]), "", "", "", "", r["command"]]
            for r in runs]  # fmt: skip
    rows += [[f"{r['name']}: peak RSS", _mib(r["peak_rss_mib"]), "", "", "", "", ""] for r in runs]
    return f"## {title}\n\n{markdown_table(HEADERS, rows)}\n"


def serving_section(r: dict[str, Any]) -> str:
    output = r.get("output", "")
    if isinstance(output, str):  # bench_serving prints its own markdown table
        body = output.strip()
    else:
        body = "```json\n" + json.dumps(output, indent=2, default=str)[:6000] + "\n```"
    return (
        "## 6. Serving (bench/bench_serving.py, its output as printed)\n\n"
        f"Command: `{r['command']}`; {_s(r['seconds'])} in all.\n\n{body}\n"
    )


# --- the steps -------------------------------------------------------------------------------


def _measured_cli(suite: Suite, name: str, *args: str) -> dict[str, Any]:
    command = suite.cli(*args)
    m = run_measured(command).check()
    return {"name": name, "command": shell_text(command), "seconds": m.seconds,
            "cpu_seconds": m.cpu_seconds, "peak_rss_mib": m.peak_rss_mib}  # fmt: skip


def _quality(suite: Suite, structure: str, people: int | None) -> dict[str, Any]:
    """The realistic county's challengers as trained above, or (people given) a county of the
    other structure built and trained in its own home."""
    home = suite.home if people is None else OUT / f"home-{structure}-{people}"
    command = [PYTHON, "-m", "bench.bench_quality", "--home", str(home), "--structure", structure]
    if people is not None:
        command += ["--people", str(people)]
    m = run_measured(command).check()
    result = m.json()
    result.update(command=shell_text(command))
    return dict(result)


def _explain(suite: Suite) -> dict[str, Any]:
    command = [PYTHON, "-m", "bench.bench_explain", "--home", str(suite.home)]
    command += ["--rows", str(EXPLAIN_ROWS)]
    m = run_measured(command).check()
    result = m.json()
    result.update(command=shell_text(command), peak_rss_mib=m.peak_rss_mib)
    return dict(result)


def _treeshap(suite: Suite) -> dict[str, Any]:
    command = [PYTHON, "-m", "bench.bench_treeshap", "--home", str(suite.home)]
    command += ["--rows", str(EXPLAIN_ROWS)]
    m = run_measured(command).check()
    result = m.json()
    result.update(command=shell_text(command), peak_rss_mib=m.peak_rss_mib)
    return dict(result)


def _serving(suite: Suite) -> dict[str, Any]:
    if not (REPO / "bench" / "bench_serving.py").is_file():
        raise FileNotFoundError("bench/bench_serving.py is not there yet")
    command = [PYTHON, "-m", "bench.bench_serving", "--home", str(suite.home)]
    m = run_measured(command).check()
    try:
        output: Any = m.json()
    except ValueError:
        output = m.stdout[-6000:]
    return {"command": shell_text(command), "seconds": m.seconds, "output": output}


def run(
    people: int,
    with_report: bool,
    config: Path | None = None,
    after_step: Callable[[Suite], None] | None = None,
) -> Suite:
    home = OUT / f"home-{people}"
    suite = Suite(home, after_step)
    store = Home(home).store_path
    if not suite.step("synth_load", lambda: bench_synth_load.run(home, people)):
        return suite  # nothing else can run without a store
    suite.step("features", lambda: bench_features.run(store, INDEX_DATE))
    for outcome in OUTCOMES:
        suite.step(f"train_{outcome}", partial(bench_train.run_one, home, outcome, config=config))
        if with_report:
            suite.step(f"train_{outcome}_report",
                       partial(bench_train.run_one, home, outcome, True, config))  # fmt: skip
    suite.step("quality_realistic", lambda: _quality(suite, "realistic", None))
    suite.step("quality_additive", lambda: _quality(suite, "additive", people))
    for outcome in OUTCOMES:
        suite.step(f"promote_{outcome}",
                   partial(_measured_cli, suite, f"promote {outcome}", "promote", "--outcome",
                           outcome))  # fmt: skip
    suite.step("snapshot", lambda: _measured_cli(suite, "features snapshot", "features"))
    suite.step("explain", lambda: _explain(suite))
    suite.step("treeshap", lambda: _treeshap(suite))
    suite.step("serving", lambda: _serving(suite))
    return suite


def sections(results: dict[str, Any]) -> list[str]:
    """The RESULTS.md sections for the steps that have finished, in order."""

    def ok(name: str) -> Any:
        return results.get(name, {}).get("result")

    out = []
    if ok("synth_load"):
        out.append(synth_load_section(ok("synth_load")))
    if ok("features"):
        out.append(features_section(ok("features")))
    trained = [ok(n) for n in results if n.startswith("train_") and ok(n)]
    if trained:
        out.append(train_section(trained))
    quality = [ok(n) for n in ("quality_realistic", "quality_additive") if ok(n)]
    if quality:
        out.append(quality_section(quality))
    if ok("explain"):
        out.append(explain_section(ok("explain")))
    if ok("treeshap"):
        out.append(treeshap_section(ok("treeshap")))
    steps = [ok(n) for n in results if n.startswith(("promote_", "snapshot")) and ok(n)]
    if steps:
        out.append(measured_section("5. Other steps (promotion, snapshot)", steps))
    if ok("serving"):
        out.append(serving_section(ok("serving")))
    for name, value in results.items():
        if "error" in value:
            out.append(f"## {name}: FAILED\n\n```\n{value['error'][-2500:]}\n```\n")
    return out


def write_results(
    results: dict[str, Any], path: Path, command: str, start: dict[str, Any], end_load: str
) -> None:
    header = [
        "## The county-scale suite (bench/run_all.py)",
        "",
        f"- Command: `{command}` (from the repository root, .venv active)",
        f"- Date: {start['date']}",
        f"- Machine: {start['nproc']} cores ({start['cpu']}), {start['ram_gib']} GiB RAM, "
        f"{start['os']}, Python {start['python']}",
        f"- Load average (1, 5, 15 min) at the start: {start['load_average']}; at the end: "
        f"{end_load}. The cores are shared with other work, so wall times are upper bounds.",
        "- Peak RSS is ru_maxrss of each benchmarked process (os.wait4), not of the runner.",
        *(f"- {note}" for note in start.get("notes", [])),
        "",
    ]
    loads = [[name, v.get("load_average_after", "")] for name, v in results.items()]
    footer = ["## Load average after each step", "", markdown_table(["step", "1 5 15 min"], loads)]
    body = "\n".join(sections(results))
    text = "\n".join(header) + "\n" + demote(body + "\n" + "\n".join(footer)) + "\n"
    write_section("run_all", text, path)


def demote(markdown: str) -> str:
    """Every heading one level down, so the suite's sections sit under its own heading."""
    return re.sub(r"^(#{2,5}) ", r"#\1 ", markdown, flags=re.M)


def _write(path: Path, command: str, start: dict[str, Any], suite: Suite) -> None:
    write_results(suite.results, path, command, start, load_average())


def render(raw: Path, path: Path) -> None:
    """Rewrite RESULTS.md from a run's raw JSON (bench/out/results-N.json)."""
    data = json.loads(raw.read_text(encoding="utf-8"))
    people = raw.stem.rsplit("-", 1)[-1]
    command = data.get("command", f"python -m bench.run_all --people {people}")
    end_load = data.get("end_load_average", "see the last step below")
    write_results(data["results"], path, command, data["machine"], end_load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=600_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PEOPLE:,} people")
    parser.add_argument("--with-report", action="store_true", help="also train with the report")
    parser.add_argument("--config", type=Path, default=None, help="training config TOML")
    parser.add_argument("--results", type=Path, default=None, help="where to write RESULTS.md")
    parser.add_argument("--render", type=Path, help="only rewrite RESULTS.md from a raw JSON")
    args = parser.parse_args()
    people = QUICK_PEOPLE if args.quick else args.people
    default = OUT / "RESULTS-quick.md" if args.quick else REPO / "bench" / "RESULTS.md"
    results_path = args.results or default
    command = "python -m bench.run_all" + (" --quick" if args.quick else f" --people {people}")
    command += " --with-report" if args.with_report else ""
    command += f" --config {args.config}" if args.config else ""
    if args.render:
        render(args.render, results_path)
        return
    start = machine()
    config = args.config or (QUICK_CONFIG if args.quick else None)
    suite = run(people, args.with_report, config, partial(_write, results_path, command, start))
    end_load = load_average()
    write_results(suite.results, results_path, command, start, end_load)
    raw = OUT / f"results-{people}.json"
    payload = {"command": command, "machine": start, "end_load_average": end_load}
    raw.write_text(json.dumps({**payload, "results": suite.results}, indent=2, default=str))
    print(f"[bench] wrote {results_path} and {raw}")


if __name__ == "__main__":
    main()
