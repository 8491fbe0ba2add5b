"""Everything a running service holds, built once when the service starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from features.home import Home
from features.outcomes import Outcome
from features.snapshot import read_snapshot
from serving.audit import AuditLog, AuditWriter
from serving.champions import ChampionError, import_champions, load_champions
from serving.config import ServingConfig
from serving.keys import KeyStore
from serving.limits import RateLimiter
from serving.metrics import Metrics
from serving.objections import ObjectionList
from serving.refusals import RefusalTally
from serving.scoring import Scorer, Snapshot

log = logging.getLogger("carerisk.serving")


@dataclass
class ServiceState:
    config: ServingConfig
    outcomes: tuple[Outcome, ...]  # the outcomes served, in the registry's order
    scorer: Scorer
    keys: KeyStore
    audit: AuditLog
    limiter: RateLimiter  # per key
    writer: AuditWriter  # the service's appends go through it, in groups
    address_limiter: RateLimiter  # failed authentications, per client address
    refusals: RefusalTally  # refusals that disclose nothing, audited in groups
    metrics: Metrics | None = None  # created in the server process (serving/service.py)


def refresh_champions(config: ServingConfig, outcomes: tuple[Outcome, ...]) -> str:
    """Import the registry's champions into the BentoML store; when the tracking server cannot
    be reached, keep the copies already imported. Returns a one-line account."""
    try:
        tags = import_champions(config.tracking_uri, config.layout.bentoml_home, outcomes)
    except ChampionError:
        raise
    except Exception as error:  # the tracking server is down or unreachable
        log.warning("tracking server unavailable (%s); serving imported champions", type(error))
        return "tracking server unavailable: serving the champions imported earlier"
    return "imported champions " + ", ".join(sorted(tags.values()))


def build_state(
    config: ServingConfig, *, import_from_registry: bool = True, warm: bool = True
) -> ServiceState:
    """Load champions (verified), the snapshot, keys, audit and objections; raise on any gap.
    With `warm`, every cohort member's probability now and their reasons in the background
    (a one-off command such as `carerisk register` computes only what it asks for)."""
    layout = config.layout
    warn_if_open(layout)
    outcomes = config.served_outcomes()
    if import_from_registry:
        log.info(refresh_champions(config, outcomes))
    models = load_champions(layout.bentoml_home, outcomes)
    snapshot = Snapshot.from_frame(read_snapshot(layout.store_path), outcomes)
    scorer = Scorer(
        models=models,
        snapshot=snapshot,
        objections=ObjectionList.load(layout.objections_path),
        stale_after_days=config.stale_after_days,
        top_k=config.top_k,
    )
    if warm:
        scorer.precompute()
    audit = AuditLog(layout.audit_path)
    writer = AuditWriter(audit)
    return ServiceState(
        config=config,
        outcomes=outcomes,
        scorer=scorer,
        keys=KeyStore(layout.keys_path),
        audit=audit,
        limiter=RateLimiter(config.rate_per_second, config.burst),
        writer=writer,
        address_limiter=RateLimiter(
            config.unauthenticated_per_second, config.unauthenticated_burst
        ),
        refusals=RefusalTally(writer),
    )


def warn_if_open(layout: Home) -> list[Path]:
    """Warn, naming a few, when the home or anything in it is open to others; returns them."""
    found = layout.too_open()
    if found:
        names = ", ".join(str(p.relative_to(layout.root)) or "." for p in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        log.warning(
            "%d path(s) in the home %s are open to other users (%s%s); it holds person-level "
            "data: run chmod -R go-rwx %s",
            len(found), layout.root, names, more, layout.root,
        )  # fmt: skip
    return found
