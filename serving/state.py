"""Everything a running service holds, built once when the service starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from features.outcomes import Outcome
from features.snapshot import read_snapshot
from serving.audit import AuditLog, AuditWriter
from serving.champions import ChampionError, import_champions, load_champions
from serving.config import ServingConfig
from serving.keys import KeyStore
from serving.limits import RateLimiter
from serving.objections import ObjectionList
from serving.scoring import Scorer, Snapshot

log = logging.getLogger("carerisk.serving")


@dataclass
class ServiceState:
    config: ServingConfig
    outcomes: tuple[Outcome, ...]  # the outcomes served, in the registry's order
    scorer: Scorer
    keys: KeyStore
    audit: AuditLog
    limiter: RateLimiter
    writer: AuditWriter  # the service's appends go through it, in groups


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
    return ServiceState(
        config=config,
        outcomes=outcomes,
        scorer=scorer,
        keys=KeyStore(layout.keys_path),
        audit=audit,
        limiter=RateLimiter(config.rate_per_second, config.burst),
        writer=AuditWriter(audit),
    )
