"""`carerisk referrals ...`: the referral loop's commands.

carerisk referrals export DIR          visits as fire_home_visit rows, an extract to load
carerisk referrals report              referrals, visits and findings by band and district
carerisk referrals cds-clients add     register a CDS Hooks client's public keys (admin)
carerisk referrals cds-clients list / remove
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from carerisk.commands._common import (
    OUTCOME_HELP,
    console,
    fail,
    outcome_of,
    print_json,
    settings_of,
)
from carerisk.settings import Settings

if TYPE_CHECKING:
    from referrals.report import AtRisk

referrals_app = typer.Typer(help="The referral loop: export visits, report, CDS clients.",
                            no_args_is_help=True)  # fmt: skip
clients_app = typer.Typer(help="CDS Hooks clients and their public keys.", no_args_is_help=True)


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    referrals_app.add_typer(clients_app, name="cds-clients")
    app.add_typer(referrals_app, name="referrals")


@referrals_app.command("export")
def export(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., help="Folder to write (empty, or a previous export)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write every visit recorded so far as fire_home_visit rows, an extract to load."""
    from features.extent import data_start
    from referrals.export import ExportError, export_visits
    from referrals.store import ReferralStore, ReferralStoreError

    home = settings_of(ctx).home
    try:
        referrals = ReferralStore(home.referrals_path).find()
        start = data_start(home.store_path) if home.store_path.exists() else None
        done = export_visits(referrals, folder, data_start=start)
    except (ExportError, ReferralStoreError) as exc:
        fail(str(exc))
    if as_json:
        print_json(done.to_dict())
    else:
        console.print(
            f"wrote {done.visits} visits to {done.folder} (extract date {done.extract_date}); "
            f"load it with `carerisk load {done.folder}`"
        )


@referrals_app.command("report")
def report(
    ctx: typer.Context,
    outcome: str = typer.Option("falls", "--outcome", help=OUTCOME_HELP),
    out: Path | None = typer.Option(None, "--out", help="Folder (default: the home's reports)."),
    capacity: bool = typer.Option(
        True,
        "--capacity/--no-capacity",
        help="Set the visits available against the people at risk (scores the register).",
    ),  # fmt: skip
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Referrals made, visits done and their findings by band and district (HTML and JSON)."""
    from evaluation.report import TEMPLATES
    from referrals.report import referral_report, write_report
    from referrals.store import ReferralStore, ReferralStoreError

    settings = settings_of(ctx)
    name = outcome_of(settings, outcome).name
    try:
        referrals = ReferralStore(settings.home.referrals_path).find()
    except ReferralStoreError as exc:
        fail(str(exc))
    at_risk = people_at_risk(settings, name) if capacity else None
    found = referral_report(referrals, name, at_risk)
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    json_path, html_path = write_report(found, out or settings.home.reports_dir, css)
    if as_json:
        print_json(found)
    else:
        console.print(f"{found['referrals']['total']} referrals, {found['visits']['total']} "
                      f"visits; wrote {html_path} and {json_path}")  # fmt: skip


def people_at_risk(settings: Settings, outcome: str) -> AtRisk:
    """The people in the register's at-risk bands (the outcome's `at_risk`: its highest bands)
    by district, scored as the service does (not audited: counts only, no person leaves this
    command)."""
    from carerisk.commands.serve import preflight, serving_config
    from referrals.report import AtRisk

    state = preflight(serving_config(settings))
    served = state.scorer.model(outcome)
    top = served.outcome.at_risk(served.bundle.bands)
    places, results = state.scorer.ranked(outcome)
    counts: dict[str, int] = {}
    for district, result in zip(places["district"], results, strict=True):
        if result.band in top:
            counts[str(district)] = counts.get(str(district), 0) + 1
    definition = served.outcome
    return AtRisk(top, counts, definition.monthly_capacity, definition.capacity_unit)


@clients_app.command("add")
def clients_add(
    ctx: typer.Context,
    iss: str = typer.Option(..., "--iss", help="The client's issuer URL (the JWT's iss)."),
    org: str = typer.Option(..., "--org", help="The organisation the client acts for."),
    jwks: Path = typer.Option(..., "--jwks", help="A JSON file with the client's JWK Set."),
    jku: list[str] = typer.Option([], "--jku", help="A key set URL the client may name (repeat)."),
    practices: list[str] = typer.Option(
        [], "--practice", help="A practice whose patients it may see (repeat for several)."
    ),
    all_practices: bool = typer.Option(
        False, "--all-practices", help="It may see the patients of every practice."
    ),
) -> None:
    """Register (or replace) a CDS Hooks client: only its public keys are stored. It sees the
    patients of the practices given with --practice, or of every practice (--all-practices)."""
    if bool(practices) == all_practices:
        fail("give --practice (one or more) or --all-practices")
    from serving.jwt_auth import CdsClientError, CdsClients

    try:
        keys = json.loads(jwks.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{jwks}: cannot read a JSON key set: {exc}")
    try:
        client = CdsClients(settings_of(ctx).home.cds_clients_path).add(
            iss, org, keys, jku, practices=practices or None
        )
    except CdsClientError as exc:
        fail(str(exc))
    typer.echo(
        f"registered {client.iss} for {client.org}: keys {', '.join(client.public()['kids'])}"
    )


@clients_app.command("list")
def clients_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """The registered CDS clients (issuer, organisation, key ids)."""
    from serving.jwt_auth import CdsClientError, CdsClients

    try:
        rows = [c.public() for c in CdsClients(settings_of(ctx).home.cds_clients_path).list()]
    except CdsClientError as exc:
        fail(str(exc))
    if as_json:
        print_json(rows)
        return
    for row in rows or [{"iss": "no CDS clients", "org": "", "kids": []}]:
        typer.echo(f"{row['iss']}  {row['org']}  {' '.join(row['kids'])}")


@clients_app.command("remove")
def clients_remove(
    ctx: typer.Context, iss: str = typer.Argument(..., help="The client's issuer URL.")
) -> None:
    """Remove a CDS client: its tokens are refused from its next call."""
    from serving.jwt_auth import CdsClientError, CdsClients

    try:
        client = CdsClients(settings_of(ctx).home.cds_clients_path).remove(iss)
    except CdsClientError as exc:
        fail(str(exc))
    typer.echo(f"removed {client.iss} ({client.org})")
