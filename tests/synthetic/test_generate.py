"""Determinism, manifest, mess manifest and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from carerisk.cli import app
from features.contract import TABLE_NAMES, table
from synthetic import CountyConfig, GenerationSummary, generate
from synthetic.mess import KINDS


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow  # three counties generated
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    config = CountyConfig(people=1_200, seed=11, mess_rate=0.01, chunk_people=1_000)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    generate(config.model_copy(update={"seed": 12}), tmp_path / "c")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert len(a) == len(TABLE_NAMES) + 6  # tables, manifest, five truth files
    assert a == b
    for name in ("person.parquet", "gp_event.parquet", "truth/true_risk.parquet"):
        assert a[name] != c[name]


def test_manifest(county: tuple[Path, GenerationSummary]) -> None:
    out, summary = county
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extract_date"] == "2025-03-31"
    assert manifest["start"] == "2022-04-01"
    assert manifest["seed"] == 0 and manifest["people"] == 20_000
    assert manifest["mess_rate"] == 0.0
    assert manifest["index_dates"][0] == "2023-04-01"
    assert manifest["index_dates"][-1] == "2025-04-01"
    assert len(manifest["index_dates"]) == 9
    assert manifest["rows"] == summary.rows
    for name in TABLE_NAMES:
        assert pq.read_metadata(out / f"{name}.parquet").num_rows == summary.rows[name]
    assert sum(summary.rows.values()) < 40 * 20_000  # about 20-30 rows a person
    mess = pq.read_table(out / "truth" / "mess.parquet")
    assert mess.num_rows == 0 and summary.mess_rows == 0


def test_mess_manifest_lists_every_bad_row(messy: tuple[Path, GenerationSummary]) -> None:
    out, summary = messy
    mess = pq.read_table(out / "truth" / "mess.parquet").to_pylist()
    assert {m["kind"] for m in mess} == set(KINDS)
    assert len(mess) == summary.mess_rows
    tables = {name: pq.read_table(out / f"{name}.parquet") for name in TABLE_NAMES}
    for name, col in (("gp_event", "value"), ("social_care", "hours_per_week"),
                      ("person", "imd_decile")):  # fmt: skip
        assert tables[name].schema.field(col).type == pa.string()
    for m in mess:
        t = tables[m["table"]]
        row = t.slice(m["row_number"], 1).to_pylist()[0]
        spec = table(m["table"])
        if m["kind"] == "missing_value":
            assert row["person_id"] == ""
        elif m["kind"] == "wrong_type":
            assert row[m["column"]] == "n/a"
        elif m["kind"] == "future_date":
            assert str(row[m["column"]]) > "2025-03-31"
        elif m["kind"] == "invalid_code":
            assert row[m["column"]] in {"W1", "12AB", "04A1", "unknown", "respite", "U"} or (
                m["column"] == "snomed_code"
            )
        elif m["kind"] == "duplicate_row":
            same = t.filter(pc.equal(t.column(spec.key[0]), row[spec.key[0]]))
            assert same.num_rows >= 2
    # the clean rows are all still there: written rows = clean rows + bad rows
    assert sum(summary.rows.values()) - summary.mess_rows > 0


def test_csv_has_the_same_columns(tmp_path: Path) -> None:
    generate(CountyConfig(people=300, seed=2), tmp_path, fmt="csv")
    for name in TABLE_NAMES:
        t = pacsv.read_csv(tmp_path / f"{name}.csv")
        assert t.column_names == table(name).column_names
    rows = pacsv.read_csv(tmp_path / "person.csv")
    assert rows.num_rows == 300


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ValidationError):
        CountyConfig(start=CountyConfig().start.replace(day=2))
    with pytest.raises(ValidationError):
        CountyConfig(mess_rate=0.9)
    with pytest.raises(ValueError, match="format"):
        generate(CountyConfig(people=100), Path("/nonexistent"), fmt="xml")  # type: ignore[arg-type]


def test_cli_writes_files_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["--home", str(tmp_path / "home"), "synth", "--people", "300", "--seed", "4"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json", "--mess", "0.01"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"]["person"] > 300  # 300 people plus injected bad person rows
    assert payload["mess_rows"] > 0
    assert (out / "manifest.json").exists() and (out / "truth" / "true_risk.parquet").exists()
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "t")])
    assert result.exit_code == 0 and "person" in result.stdout
    bad = runner.invoke(app, [*args, "--out", str(out), "--format", "xml"])
    assert bad.exit_code == 1 and "parquet or csv" in bad.output
