"""Commands for the serve stage: API keys (`carerisk keys ...`) and the audit log
(`carerisk audit ...`). The `serve` command itself is added with the service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from carerisk.commands._common import fail, print_json, settings_of

keys_app = typer.Typer(help="Issue, list and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Check and read the audit log.", no_args_is_help=True)

ROLE_HELP = "gp, fire, analyst or admin"


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")


def _audit_path(home: Path) -> Path:
    from serving.audit import AUDIT_FILE

    return home / AUDIT_FILE


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    org: str = typer.Option(..., "--org", help="Organisation the key is issued to."),
    role: str = typer.Option(..., "--role", help=ROLE_HELP),
    expires_days: int | None = typer.Option(
        None, "--expires-days", min=1, help="Key stops working after this many days."
    ),
) -> None:
    """Issue a key. The full key is printed once and never stored: copy it now."""
    from serving.keys import KeyStore, KeyStoreError, utc_now

    store = KeyStore(settings_of(ctx).keys_path)
    expires = utc_now() + dt.timedelta(days=expires_days) if expires_days else None
    try:
        key_id, full_key = store.add(org, role, expires_at=expires)
    except KeyStoreError as exc:
        fail(str(exc))
    typer.echo(f"key_id: {key_id}")
    typer.echo(f"org:    {org}")
    typer.echo(f"role:   {role}")
    if expires:
        typer.echo(f"expires: {expires.isoformat(timespec='seconds')}")
    typer.echo(f"key:    {full_key}")
    typer.echo("This key is shown once and cannot be recovered; store it securely.", err=True)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List keys (id, org, role, status); keys themselves are never shown."""
    from serving.keys import KeyStore, KeyStoreError, utc_now

    now = utc_now()
    try:
        rows = [r.public(now) for r in KeyStore(settings_of(ctx).keys_path).list()]
    except KeyStoreError as exc:
        fail(str(exc))
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no keys")
        return
    for row in rows:
        expiry = row["expires_at"] or "never"
        typer.echo(
            f"{row['key_id']}  {row['role']:<7}  {row['status']:<7}  expires {expiry}  {row['org']}"
        )


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="Key id.")) -> None:
    """Revoke a key; requests with it fail from then on."""
    from serving.keys import KeyStore, KeyStoreError

    try:
        record = KeyStore(settings_of(ctx).keys_path).revoke(key_id)
    except KeyStoreError as exc:
        fail(str(exc))
    typer.echo(f"revoked {record.key_id} ({record.org}, {record.role}) at {record.revoked_at}")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Walk the hash chain and compare it with the anchor; exit 1 if it is broken."""
    from serving.audit import AuditLog, AuditUnavailable

    try:
        result = AuditLog(_audit_path(settings_of(ctx).home)).verify()
    except AuditUnavailable as exc:
        fail(str(exc))
    if as_json:
        print_json(result.to_dict())
    elif result.ok:
        typer.echo(f"audit chain intact: {result.records} records ({result.reason})")
    else:
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq else ""
        typer.echo(f"audit chain BROKEN{where}: {result.reason}")
    if not result.ok:
        raise typer.Exit(code=1)


@audit_app.command("tail")
def audit_tail(
    ctx: typer.Context,
    n: int = typer.Option(20, "-n", "--lines", min=1, help="How many records."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the latest audit records, oldest first."""
    from serving.audit import AuditLog, AuditUnavailable

    try:
        records = AuditLog(_audit_path(settings_of(ctx).home)).tail(n)
    except AuditUnavailable as exc:
        fail(str(exc))
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    for r in records:
        people = ",".join(r.person_ids) or "-"
        bands = ",".join(r.bands) or "-"
        typer.echo(
            f"{r.seq:>6}  {r.time}  {r.org}  {r.role}  {r.endpoint}  {r.outcome}  "
            f"{r.status}  people={people}  bands={bands}  model={r.model_name}:{r.model_version}"
        )
