"""Everything a running service holds, built when the service starts; its scorer is swapped by
a reload (serving/swap.py, serving/watch.py)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from features.home import Home
from features.outcomes import Outcome
from serving.audit import AuditLog, AuditWriter
from serving.config import ServingConfig
from serving.keys import KeyStore
from serving.limits import RateLimiter
from serving.refusals import RefusalTally
from serving.request_metrics import Metrics
from serving.scoring import Scorer
from serving.swap import ScorerHolder, build_scorer
from serving.watch import Reloads

log = logging.getLogger("carerisk.serving")


@dataclass
class ServiceState:
    config: ServingConfig
    outcomes: tuple[Outcome, ...]  # the outcomes served, in the registry's order
    holder: ScorerHolder  # the scorer served now, swapped by a reload (serving/swap.py)
    keys: KeyStore
    audit: AuditLog
    limiter: RateLimiter  # per key
    writer: AuditWriter  # the service's appends go through it, in groups
    address_limiter: RateLimiter  # failed authentications, per client address
    refusals: RefusalTally  # refusals that disclose nothing, audited in groups
    metrics: Metrics | None = None  # created in the server process (serving/service.py)
    reloads: Reloads | None = None  # created in the server process (serving/service.py)
    pinned: Scorer | None = None  # a request's scorer (`pin`)

    @property
    def scorer(self) -> Scorer:
        """The request's scorer when pinned, else the one served now."""
        return self.pinned if self.pinned is not None else self.holder.current

    def pin(self) -> ServiceState:
        """This state with its scorer fixed to the one served now. The request guard pins one per
        request when it admits it, so a request reads one scorer from start to end, whatever a
        reload swaps meanwhile."""
        view = copy.copy(self)
        view.pinned = self.holder.current
        return view


def build_state(config: ServingConfig, *, import_from_registry: bool = True) -> ServiceState:
    """Load champions (verified), their scores at the snapshot (serving/scores_file.py), keys,
    audit and objections; raise on any gap."""
    layout = config.layout
    warn_if_open(layout)
    outcomes = config.served_outcomes()
    scorer = build_scorer(config, outcomes, import_from_registry=import_from_registry)
    audit = AuditLog(layout.audit_path)
    writer = AuditWriter(audit)
    return ServiceState(
        config=config,
        outcomes=outcomes,
        holder=ScorerHolder(scorer),
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
