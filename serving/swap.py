"""Swapping the scorer without downtime: a new one is built beside the old, then one reference
is switched.

The service holds its `Scorer` (champions, their scores exports at the snapshot, objections) in
a `ScorerHolder`. A request takes the holder's scorer once, when the request guard admits it
(serving/state.py `ServiceState.pin`), and uses that one to the end, so a request in flight
finishes on the state it started with. `swap_in` builds a complete new scorer (champions
imported from the registry and verified: checksums and feature list; objections; each
champion's scores export at the stored snapshot opened, or, when `carerisk score-all` has not
written it, the snapshot scored now and the export written) while the old one serves; anything
that goes wrong leaves the old one serving and raises `ReloadRefused` saying why. After a swap
the old scorer is freed once its last request ends (`release`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from codelists import CodeLists
from features.outcomes import Outcome
from serving.config import ServingConfig
from serving.model_store import (
    ChampionError,
    check_coverage,
    import_champions,
    load_champions,
    write_pointer,
)
from serving.objection_list import ObjectionList
from serving.scores_file import open_exports
from serving.scoring import Scorer

log = logging.getLogger("carerisk.serving")

RELEASE_WAIT_SECONDS = 60.0  # how long requests still holding a swapped-out scorer may take


class ReloadRefused(RuntimeError):
    """A reload that did not happen; the old state is still served. `status`: 422 when the new
    state is unusable (bad checksum, feature list, missing snapshot), 409 when busy."""

    status = 422
    code = "reload_refused"


class ReloadBusy(ReloadRefused):
    status = 409
    code = "reload_under_way"


@dataclass
class ScorerHolder:
    """The scorer served now. Readers take `current` once; `swap` replaces it in one step."""

    current: Scorer
    swaps: int = 0  # how many times it was replaced

    def swap(self, new: Scorer) -> Scorer:
        """Serve `new` from now on; returns the scorer it replaced."""
        old, self.current = self.current, new
        self.swaps += 1
        return old


def refresh_champions(config: ServingConfig, outcomes: Sequence[Outcome]) -> str:
    """Import the registry's champions into the BentoML store; when the tracking server cannot
    be reached, keep the copies already imported. Returns a one-line account."""
    try:
        tags = import_champions(config.tracking_uri, config.layout, outcomes)
    except ChampionError:
        raise
    except Exception as error:  # the tracking server is down or unreachable
        log.warning("tracking server unavailable (%s); serving imported champions", type(error))
        return "tracking server unavailable: serving the champions imported earlier"
    return "imported champions " + ", ".join(sorted(tags.values()))


def build_scorer(
    config: ServingConfig,
    outcomes: Sequence[Outcome],
    *,
    import_from_registry: bool = True,
    strict: bool = False,
) -> Scorer:
    """A complete scorer: champions verified, objections, each champion's scores export at the
    stored snapshot (scored now when missing: serving/scores_file.py `open_exports`). `strict`
    (a reload): the registry must answer, and the pointer file names the new champions only
    once they and their scores have been read without fault."""
    layout = config.layout
    tags = None
    if import_from_registry and strict:
        tags = import_champions(config.tracking_uri, layout, outcomes, point=False)
    elif import_from_registry:
        log.info(refresh_champions(config, outcomes))
    lists = CodeLists.load(config.codelists)
    models = load_champions(layout, outcomes, tags=tags, codelists_digest=lists.digest)
    check_coverage(models, layout.store_path)
    objections = ObjectionList.load(layout.objections_path)
    scorer = Scorer(
        models=models,
        scores=open_exports(layout, models, objections.ids),
        objections=objections,
        stale_after_days=config.stale_after_days,
        top_k=config.top_k,
    )
    if tags is not None:
        write_pointer(layout, tags)
    return scorer


@dataclass(frozen=True)
class Reloaded:
    """A swap that happened: what was served before and after (see `Scorer.served`)."""

    before: dict[str, Any]
    after: dict[str, Any]
    seconds: float
    released: threading.Thread | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "seconds": round(self.seconds, 3)}


def swap_in(
    holder: ScorerHolder,
    config: ServingConfig,
    outcomes: Sequence[Outcome],
    *,
    frozen: bool = False,
) -> Reloaded:
    """Build a new scorer beside the one served, then serve it. Raises ReloadRefused, naming
    the cause, when the build fails: the old scorer goes on serving. `frozen`: the process
    keeps its long-lived objects out of the collector (gc.freeze, serving/service.py)."""
    began = time.perf_counter()
    try:
        new = build_scorer(config, outcomes, strict=True)
    except Exception as error:  # noqa: BLE001 - any fault refuses the reload, said in words
        log.error("reload refused: %s", reason_of(error))
        raise ReloadRefused(reason_of(error)) from None
    old = holder.swap(new)
    reloaded = Reloaded(old.served(), new.served(), time.perf_counter() - began,
                        release(old, frozen=frozen))  # fmt: skip
    log.info("reloaded in %.1f s: %s", reloaded.seconds, describe(reloaded.after))
    return reloaded


def reason_of(error: BaseException) -> str:
    """One line saying why a build failed (errors here name files, models and features)."""
    text = " ".join(str(error).split())[:600]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def describe(served: dict[str, Any]) -> str:
    models = ", ".join(f"{m['model_name']} v{m['model_version']}" for m in served["models"])
    return f"{models}; snapshot {served['snapshot_date']}"


def release(old: Scorer, *, frozen: bool, wait: float = RELEASE_WAIT_SECONDS) -> threading.Thread:
    """Close the old scorer and wait, in a thread (returned), until the
    requests still using it are done and it is freed. Should a reference cycle keep it, the
    collector runs, unfrozen for the pass in a frozen process (else the frozen old state would
    never be collected) and frozen again after."""
    old.close()
    gone = weakref.ref(old)
    del old
    thread = threading.Thread(
        target=_collect, args=(gone, frozen, wait), name="carerisk-release", daemon=True
    )
    thread.start()
    return thread


def _collect(gone: weakref.ref[Scorer], frozen: bool, wait: float) -> None:
    began = time.monotonic()
    deadline = began + wait
    settle = time.monotonic() + 2.0  # requests in flight end in milliseconds
    while gone() is not None and time.monotonic() < min(settle, deadline):
        time.sleep(0.02)
    # A scorer holds no reference cycle, so the last request's end frees it; the collector
    # (a pass over every object: hundreds of milliseconds of stalled requests) is the fallback
    # for whatever a cycle still keeps.
    while gone() is not None and time.monotonic() < deadline:
        _full_collection(frozen)
        if gone() is not None:
            time.sleep(1.0)
    if gone() is not None:
        log.warning("a swapped-out scorer is still referenced after %.0f s", wait)
    else:
        log.info("swapped-out scorer freed %.1f s after the swap", time.monotonic() - began)
    if frozen:  # the build's garbage goes (a pass over the objects made since the last freeze,
        gc.collect()  # not the frozen ones); the new state's objects join the frozen, as at start
        gc.freeze()


def _full_collection(frozen: bool) -> None:
    if frozen:
        gc.unfreeze()
    try:
        gc.collect()
    finally:
        if frozen:
            gc.freeze()
