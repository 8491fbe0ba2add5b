"""`carerisk import omop|fhir SOURCE --out DIR`: an OMOP CDM or FHIR R4 source written as a
contract extract, with the coverage block in its manifest."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer

from carerisk.commands._common import fail, print_json

import_app = typer.Typer(
    help="Write an OMOP CDM or FHIR R4 source as a contract extract for `carerisk load`.",
    no_args_is_help=True,
)
OUT_HELP = "Folder to write the extract into (one Parquet file per table, manifest.json)."
DATE_HELP = "Extract date (YYYY-MM-DD); default: from the source (release date, last event)."


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    import_app.command("omop")(omop)
    import_app.command("fhir")(fhir)
    app.add_typer(import_app, name="import")


def omop(
    source: str = typer.Argument(
        ..., help="A DuckDB file, a postgresql:// URL, or a folder of CDM tables (CSV or Parquet)."
    ),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    schema: str | None = typer.Option(
        None, "--schema", help="The CDM schema (default: the one schema with a person table)."
    ),
    person_ids: str = typer.Option(
        "person-id",
        "--person-ids",
        help="person-id (the contract id is omop-<person_id>) or source-value "
        "(person_source_value, when it is already the pseudonym used elsewhere).",
    ),
    extract_date: str | None = typer.Option(None, "--extract-date", help=DATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Map an OMOP CDM 5.3 or 5.4 database to the contract tables."""
    from importers.extract import SourceError
    from importers.omop import import_omop

    if person_ids not in ("person-id", "source-value"):
        fail(f"--person-ids must be person-id or source-value, not {person_ids!r}")
    _check_out(out)
    try:
        manifest = import_omop(
            source,
            out,
            schema=schema,
            person_ids="person_id" if person_ids == "person-id" else "person_source_value",
            extract_date=_date(extract_date),
        )
    except SourceError as err:
        fail(str(err))
    _show(manifest, out, as_json)


def fhir(
    source: Path = typer.Argument(
        ..., help="A Bulk Data export folder (NDJSON, optionally .gz) or a folder of Bundles."
    ),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    extract_date: str | None = typer.Option(None, "--extract-date", help=DATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Map FHIR R4 resources to the contract tables."""
    from importers.extract import SourceError
    from importers.fhir import import_fhir

    _check_out(out)
    try:
        manifest = import_fhir(source, out, extract_date=_date(extract_date))
    except SourceError as err:
        fail(str(err))
    _show(manifest, out, as_json)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        fail(f"--extract-date {text!r} is not a date (YYYY-MM-DD)")


def _show(manifest: dict[str, Any], out: Path, as_json: bool) -> None:
    if as_json:
        print_json(manifest)
        return
    from rich.console import Console
    from rich.table import Table

    cover = manifest["coverage"]
    sources = Table(title=f"read from {cover['source']['location']} ({cover['source']['kind']})")
    for column in ("source", "read", "written", "dropped", "reasons"):
        sources.add_column(column, justify="left" if column in ("source", "reasons") else "right")
    for name, c in cover["sources"].items():
        reasons = "; ".join(f"{r}: {n:,}" for r, n in c["dropped"].items())
        dropped = sum(c["dropped"].values())
        sources.add_row(name, f"{c['read']:,}", f"{c['written']:,}", f"{dropped:,}", reasons)
    tables = Table(title=f"extract in {out} (extract date {manifest['extract_date']})")
    for column in ("table", "state", "rows", "not supplied / reason"):
        tables.add_column(column, justify="right" if column == "rows" else "left")
    for name, t in cover["tables"].items():
        note = t.get("reason") or ", ".join(t.get("not_supplied", []))
        rows = manifest["rows"].get(name)
        tables.add_row(name, t["state"], "" if rows is None else f"{rows:,}", note)
    Console().print(sources)
    Console().print(tables)
