"""Commands for the serving stage: the service (`carerisk serve`), risk registers
(`carerisk register`), API keys (`carerisk keys ...`) and the audit log (`carerisk audit ...`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from carerisk.commands._common import OUTCOME_HELP, console, fail, print_json, settings_of
from carerisk.settings import Settings
from serving import defaults

keys_app = typer.Typer(help="Issue, list and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Check and read the audit log.", no_args_is_help=True)

ROLE_HELP = "gp, fire, analyst, admin or monitor"


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("serve")(serve)
    app.command("register")(register_cmd)
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    org: str = typer.Option(..., "--org", help="Organisation the key is issued to."),
    role: str = typer.Option(..., "--role", help=ROLE_HELP),
    expires_days: int | None = typer.Option(
        None, "--expires-days", min=1, help="Key stops working after this many days."
    ),
    practices: list[str] = typer.Option(
        [], "--practice", help="A GP key: a practice code it acts for (repeat for several)."
    ),
    all_practices: bool = typer.Option(
        False,
        "--all-practices",
        help="A GP key for every practice (a federation, under a data-sharing agreement).",
    ),
) -> None:
    """Issue a key. The full key is printed once and never stored: copy it now. A GP key
    needs --practice (one or more) or --all-practices."""
    from serving.keys import KeyStore, KeyStoreError, utc_now

    store = KeyStore(settings_of(ctx).home.keys_path)
    expires = utc_now() + dt.timedelta(days=expires_days) if expires_days else None
    try:
        key_id, full_key = store.add(
            org, role, expires_at=expires, practices=practices, all_practices=all_practices
        )
    except KeyStoreError as exc:
        fail(str(exc))
    scope = store.list_one(key_id).principal().scope
    typer.echo(f"key_id: {key_id}")
    typer.echo(f"org:    {org}")
    typer.echo(f"role:   {role}")
    if scope:
        typer.echo(f"scope:  {scope}")
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
        rows = [r.public(now) for r in KeyStore(settings_of(ctx).home.keys_path).list()]
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
        scope = row["scope"] or "-"
        typer.echo(
            f"{row['key_id']}  {row['role']:<7}  {row['status']:<7}  expires {expiry}  "
            f"scope {scope}  {row['org']}"
        )


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="Key id.")) -> None:
    """Revoke a key; requests with it fail from then on."""
    from serving.keys import KeyStore, KeyStoreError

    try:
        record = KeyStore(settings_of(ctx).home.keys_path).revoke(key_id)
    except KeyStoreError as exc:
        fail(str(exc))
    typer.echo(f"revoked {record.key_id} ({record.org}, {record.role}) at {record.revoked_at}")


CHECKPOINTS_HELP = (
    "Folder (or file) of audit checkpoints, outside the home and not writable by the service "
    "(default: $CARERISK_AUDIT_CHECKPOINTS)."
)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    checkpoints: Path | None = typer.Option(None, "--checkpoints", help=CHECKPOINTS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Walk the hash chain, compare it with the anchor and with the checkpoints; exit 1 if it
    is broken (a log emptier, shorter or other than a checkpoint saw is broken)."""
    from serving.audit import AuditLog, AuditUnavailable
    from serving.checkpoints import CheckpointError, read_checkpoints

    settings = settings_of(ctx)
    location = checkpoints or settings.audit_checkpoints
    try:
        points = read_checkpoints(location) if location else []
        result = AuditLog(settings.home.audit_path).verify(points)
    except (AuditUnavailable, CheckpointError) as exc:
        fail(str(exc))
    if as_json:
        print_json({**result.to_dict(), "checkpoints": len(points)})
    elif result.ok:
        typer.echo(f"audit chain intact: {result.records} records ({result.reason})")
        if not location:
            typer.echo(
                "no checkpoints given: a log deleted or rewritten with its anchor cannot be "
                "told from a genuine one (see carerisk audit checkpoint)",
                err=True,
            )
    else:
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq else ""
        typer.echo(f"audit chain BROKEN{where}: {result.reason}")
    if not result.ok:
        raise typer.Exit(code=1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    ctx: typer.Context,
    checkpoints: Path | None = typer.Option(None, "--checkpoints", help=CHECKPOINTS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Verify the chain against the earlier checkpoints, then append its head to them. Run it
    often (e.g. from root's crontab) as a user the service's account is not."""
    from serving.audit import AuditLog, AuditUnavailable
    from serving.checkpoints import CheckpointError, write_checkpoint

    settings = settings_of(ctx)
    location = checkpoints or settings.audit_checkpoints
    if location is None:
        fail("give --checkpoints DIR or set CARERISK_AUDIT_CHECKPOINTS")
    try:
        point, written = write_checkpoint(
            AuditLog(settings.home.audit_path), location, settings.home.root
        )
    except (AuditUnavailable, CheckpointError) as exc:
        fail(str(exc))
    if as_json:
        print_json({**point.to_dict(), "written": written})
    else:
        typer.echo(json.dumps(point.to_dict(), sort_keys=True))
        if not written:
            typer.echo("unchanged since the latest checkpoint: nothing written", err=True)


@audit_app.command("tail")
def audit_tail(
    ctx: typer.Context,
    n: int = typer.Option(20, "-n", "--lines", min=1, help="How many records."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the latest audit records, oldest first."""
    from serving.audit import AuditLog, AuditUnavailable

    try:
        records = AuditLog(settings_of(ctx).home.audit_path).tail(n)
    except AuditUnavailable as exc:
        fail(str(exc))
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    for r in records:
        people = ",".join(r.person_ids) or "-"
        bands = ",".join(r.bands) or "-"
        times = f"  x{r.count}" if r.count else ""
        scope = f"  scope={r.scope}" if r.scope else ""
        typer.echo(
            f"{r.seq:>6}  {r.time}  {r.org}  {r.role}{scope}  key={r.key_id}:{r.key_check or '-'}  "
            f"client={r.client or '-'}  {r.endpoint}  {r.outcome}  {r.status}{times}  "
            f"people={people}  bands={bands}  model={r.model_name}:{r.model_version}"
        )


# --- the service and registers --------------------------------------------------------------


def serving_config(settings: Settings, **overrides: Any) -> Any:
    """The service's configuration: this home, its tracking store and the extra outcome
    modules (passed on to the server process with the other CARERISK_ settings)."""
    from serving.config import ServingConfig

    return ServingConfig(
        home=settings.home.root,
        tracking_uri=settings.tracking_uri,
        outcome_modules=settings.outcome_modules,
        audit_checkpoints=settings.audit_checkpoints,
        codelists=settings.codelists,
        **overrides,
    )


def preflight(config: Any, *, import_from_registry: bool = True) -> Any:
    """Import and verify the champions and read the snapshot, as the service will; fail with
    one line naming what is wrong."""
    os.environ["BENTOML_HOME"] = str(config.layout.bentoml_home)
    from features.outcomes import UnknownOutcome
    from serving.model_store import ChampionError
    from serving.state import build_state

    try:
        return build_state(config, import_from_registry=import_from_registry)
    except (ChampionError, LookupError, UnknownOutcome) as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - any other start failure, said in one line
        fail(f"{type(exc).__name__}: {exc}")


def serve(
    ctx: typer.Context,
    port: int = typer.Option(defaults.PORT, "--port", min=1, max=65535, help="Loopback port."),
    host: str = typer.Option(
        defaults.HOST,
        "--host",
        help="Address to bind: loopback unless --allow-remote is given (docs/security.md).",
    ),
    max_batch: int = typer.Option(
        defaults.MAX_BATCH,
        "--max-batch",
        min=1,
        max=defaults.MAX_BATCH_LIMIT,
        help="People per request.",
    ),  # fmt: skip
    rate: float = typer.Option(
        defaults.RATE_PER_SECOND, "--rate-per-second", min=0.1, help="Requests a second per key."
    ),
    burst: int = typer.Option(
        defaults.BURST, "--burst", min=1, help="Requests a key may burst to."
    ),
    stale_after_days: int = typer.Option(
        defaults.STALE_AFTER_DAYS,
        "--stale-after-days",
        min=1,
        help="Warn when the snapshot is older than this.",
    ),  # fmt: skip
    workers: int = typer.Option(
        defaults.WORKERS,
        "--workers",
        min=1,
        max=defaults.WORKERS_MAX,
        help="Server processes. They share the memory-mapped scores exports; each keeps its "
        "own per-key rate limits (so a key may make rate x workers requests a second).",
    ),
    unauthenticated_rate: float = typer.Option(
        defaults.UNAUTHENTICATED_PER_SECOND,
        "--unauthenticated-rate",
        min=0.1,
        help="Failed authentications a second a client address may make before it is refused "
        "without its key being checked.",
    ),
    unauthenticated_burst: int = typer.Option(
        defaults.UNAUTHENTICATED_BURST,
        "--unauthenticated-burst",
        min=1,
        help="Failed authentications it may burst to.",
    ),
    header_timeout: float = typer.Option(
        defaults.HEADER_TIMEOUT_SECONDS,
        "--header-timeout",
        min=0.1,
        max=defaults.HEADER_TIMEOUT_MAX,
        help="Seconds to receive a request head.",
    ),  # fmt: skip
    body_timeout: float = typer.Option(
        defaults.BODY_TIMEOUT_SECONDS,
        "--body-timeout",
        min=0.1,
        max=defaults.BODY_TIMEOUT_MAX,
        help="Seconds for the whole request body to arrive.",
    ),
    fire_sharing: str = typer.Option(
        defaults.FIRE_SHARING_DEFAULT,
        "--fire-sharing",
        help="What the fire role may read: referrals (only people referred with their "
        "agreement) or register (also the ranked register, under a data-sharing agreement).",
    ),
    public_url: str = typer.Option(
        "", "--public-url", help="The address callers reach the service at (CDS Hooks audience)."
    ),
    cds_origins: list[str] = typer.Option(
        [], "--cds-cors-origin", help="A browser origin allowed to call /cds-services (repeat)."
    ),
    trusted_proxies: list[str] = typer.Option(
        [],
        "--trusted-proxy",
        help="Address or CIDR of a proxy whose X-Forwarded-For is believed (repeat; none by "
        "default: the client is the socket's peer).",
    ),
    allow_remote: bool = typer.Option(
        False,
        "--allow-remote",
        help="Allow a --host that is not loopback, with --trusted-proxy or --tls-certfile.",
    ),
    tls_certfile: Path | None = typer.Option(
        None, "--tls-certfile", help="Serve HTTPS with this certificate (PEM)."
    ),
    tls_keyfile: Path | None = typer.Option(
        None, "--tls-keyfile", help="The certificate's private key (PEM)."
    ),
    watch_seconds: float = typer.Option(
        defaults.RELOAD_POLL_SECONDS,
        "--watch-seconds",
        min=0,
        help="Every so many seconds, compare the registry's champions and the snapshot with "
        "those served and reload when either changed (0: only POST /v1/admin/reload).",
    ),
) -> None:
    """Check the champions, then run the scoring API until interrupted."""
    settings = settings_of(ctx)
    if fire_sharing not in defaults.FIRE_SHARING:
        choices = " or ".join(defaults.FIRE_SHARING)
        fail(f"--fire-sharing must be {choices}, not {fire_sharing!r}")
    tls = (tls_certfile, tls_keyfile) if tls_certfile and tls_keyfile else None
    if (tls_certfile is None) != (tls_keyfile is None):
        fail("give --tls-certfile and --tls-keyfile together")
    problem = remote_problem(host, allow_remote, bool(trusted_proxies), tls is not None)
    if problem:
        fail(problem)
    listen = listen_url(host, port, tls is not None)
    if not listen and not public_url:
        console.print(f"CDS Hooks is off: {host} is every address, so give --public-url")
    config = serving_config(
        settings, max_batch=max_batch, stale_after_days=stale_after_days,
        rate_per_second=rate, burst=burst, unauthenticated_per_second=unauthenticated_rate,
        unauthenticated_burst=unauthenticated_burst, header_timeout_seconds=header_timeout,
        body_timeout_seconds=body_timeout, fire_sharing=fire_sharing, public_url=public_url,
        cds_cors_origins=tuple(cds_origins), reload_poll_seconds=watch_seconds,
        trusted_proxies=tuple(trusted_proxies), listen_url=listen,
    )  # fmt: skip
    # Start-up asks the tracking server for the champions once; when it is down, fail fast and
    # serve the copies already imported instead of retrying for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    state = preflight(config)
    models = ", ".join(f"{m.name} v{m.version}" for m in state.scorer.models.values())
    where = listen or f"{'https' if tls else 'http'}://{host}:{port}"
    console.print(f"serving {models} on {where} (snapshot {state.scorer.index_date})")
    command = server_command(host, port, tls)
    env = {**os.environ, **config.to_env(), "BENTOML_HOME": str(config.layout.bentoml_home)}
    env[CONFIG_OPTIONS] = worker_options(env.get(CONFIG_OPTIONS, ""), workers)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server takes over this process, so signals (SIGTERM, Ctrl-C) reach it directly.
    os.execve(sys.executable, command, env)


# Idle keep-alive connections are closed after this long. Uvicorn's 5 s equals httpx's pool
# expiry, so a client could reuse a connection as the server closed it (a reset request in the
# 5-minute load test); proxies and client pools expire theirs well before 75 s.
KEEP_ALIVE_SECONDS = 75


CONFIG_OPTIONS = "BENTOML_CONFIG_OPTIONS"  # BentoML's runtime overrides of service config


def worker_options(existing: str, workers: int) -> str:
    """BentoML config overrides with the service's worker count set (others kept)."""
    kept = [o for o in existing.split() if not o.startswith("services.carerisk.workers=")]
    return " ".join([*kept, f"services.carerisk.workers={workers}"])


def server_command(host: str, port: int, tls: tuple[Path, Path] | None = None) -> list[str]:
    command = [
        sys.executable, "-m", "bentoml", "serve", "serving.service:CareRisk",
        "--host", host, "--port", str(port), "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),
    ]  # fmt: skip
    if tls:
        command += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
    return command


def is_loopback(host: str) -> bool:
    """True for a loopback address or the name localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_problem(host: str, allow_remote: bool, proxied: bool, tls: bool) -> str | None:
    """Why `--host` may not be used as given, or None."""
    if is_loopback(host):
        return None
    if not allow_remote:
        return (
            f"--host {host} is not loopback: the service then answers other machines; give "
            "--allow-remote with --trusted-proxy (behind a proxy) or --tls-certfile"
        )
    if not (proxied or tls):
        return (
            f"--host {host} with --allow-remote needs --trusted-proxy (a proxy in front) or "
            "--tls-certfile and --tls-keyfile (TLS here)"
        )
    return None


def listen_url(host: str, port: int, tls: bool) -> str:
    """The address the service is started on, or "" when it listens on every address."""
    scheme = "https" if tls else "http"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{scheme}://{host}:{port}"
    if address.is_unspecified:
        return ""
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{scheme}://{shown}:{port}"


def register_cmd(
    ctx: typer.Context,
    outcome: str = typer.Option(..., "--outcome", help=OUTCOME_HELP),
    district: str | None = typer.Option(None, "--district", help="Only this district."),
    practice: str | None = typer.Option(None, "--practice", help="Only this GP practice."),
    top: int | None = typer.Option(None, "--top", min=1, help="Only the N highest risks."),
    role: str = typer.Option("gp", "--role", help="Whose view: gp (full) or fire (restricted)."),
    out: Path | None = typer.Option(None, "--out", help="CSV or Parquet file to write."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write a ranked risk register (the same audited code path as the API)."""
    from serving.audit import AuditUnavailable
    from serving.keys import Principal
    from serving.risk_register import RegisterQuery, ranked_register, write_register
    from serving.roles import ROLES
    from serving.scoring import ScoringError

    settings = settings_of(ctx)
    if role not in ROLES:
        fail(f"unknown role {role!r}; choose {', '.join(ROLES)}")
    state = preflight(serving_config(settings))
    principal = Principal(key_id="local-cli", org="local", role=role)
    query = RegisterQuery(outcome, district=district, practice=practice, top=top)
    try:
        found = ranked_register(state, principal, query)
    except ScoringError as exc:
        fail(exc.message)
    except AuditUnavailable as exc:
        fail(f"the audit trail cannot be written, so no register is written: {exc}")
    frame = found.rows()
    where = district or practice or "county"
    name = found.outcome
    path = out or settings.home.reports_dir / f"register-{name}-{where}.csv".replace(" ", "_")
    write_register(frame, path)
    summary = {"outcome": name, "people": len(frame), "path": str(path), "role": role}
    if as_json:
        print_json(summary)
    else:
        console.print(f"wrote {len(frame)} people to {path}")
