"""`carerisk import omop|fhir` and `carerisk synth --format omop` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from carerisk.cli import app
from tests.importers.test_fhir import RESOURCES, bulk_export
from tests.importers.test_omop import CDM, write_folder

runner = CliRunner()


def run(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.output


def test_import_omop_prints_the_coverage(tmp_path: Path) -> None:
    cdm = write_folder(tmp_path / "cdm", CDM)
    code, out = run(tmp_path, "import", "omop", str(cdm), "--out", str(tmp_path / "x"))
    assert code == 0, out
    assert "OMOP CDM holds no adult social care" in out
    assert "condition_occurrence" in out and "dropped" in out
    code, out = run(tmp_path, "import", "omop", str(cdm), "--out", str(tmp_path / "y"), "--json")
    assert code == 0, out
    assert json.loads(out)["coverage"]["tables"]["social_care"]["state"] == "absent"


def test_import_refusals_are_one_line(tmp_path: Path) -> None:
    code, out = run(tmp_path, "import", "omop", str(tmp_path / "none"), "--out", str(tmp_path))
    assert code == 1 and "no such file or folder" in out
    cdm = write_folder(tmp_path / "cdm", CDM)
    args = ("import", "omop", str(cdm), "--out", str(tmp_path / "x"))
    code, out = run(tmp_path, *args, "--person-ids", "nhs")
    assert code == 1 and "--person-ids must be person-id or source-value" in out
    code, out = run(tmp_path, *args, "--extract-date", "2021-13-01")
    assert code == 1 and "is not a date" in out
    code, out = run(tmp_path, "import", "fhir", str(cdm), "--out", str(tmp_path / "f"))
    assert code == 1 and "no NDJSON files and no Bundle files" in out


def test_import_fhir_with_an_extract_date(tmp_path: Path) -> None:
    export = bulk_export(tmp_path / "export", RESOURCES)
    out_dir = tmp_path / "x"
    args = ("import", "fhir", str(export), "--out", str(out_dir), "--extract-date", "2022-01-31")
    code, out = run(tmp_path, *args)
    assert code == 0, out
    assert json.loads((out_dir / "manifest.json").read_text())["extract_date"] == "2022-01-31"


def test_synth_omop_refuses_mess(tmp_path: Path) -> None:
    args = ("synth", "--people", "200", "--format", "omop", "--out", str(tmp_path / "c"))
    code, out = run(tmp_path, *args, "--mess", "0.01")
    assert code == 1 and "--format omop writes a clean county" in out
    code, out = run(tmp_path, *args, "--json")
    assert code == 0, out
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["format"] == "omop" and manifest["omop"]["database"] == "omop.duckdb"
    assert not (tmp_path / "c" / ".county").exists()
