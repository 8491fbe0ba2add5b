"""Bootstrap intervals for subgroup metrics, vectorised over resamples and groups.

fairlearn's own MetricFrame bootstrap (n_boot) calls every metric on every group of every
resample through `np.stack` over single values, which costs Python work per person; on a
cohort of 50,000 people and 200 resamples that takes hours. Here each resample is a row of
counts (weights) and every group's sums come from `np.add.reduceat` over people sorted by
group, so the same percentile intervals cost a few seconds. Resampling is of people over the
whole validation set, as in fairlearn, and the same resamples serve every descriptor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.metrics import _CELLS_PER_BLOCK, _resample_counts


def _group_sums(w: np.ndarray, x: np.ndarray | float, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(w * x, starts, axis=1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _rates(
    w: np.ndarray, y: np.ndarray, p: np.ndarray, flag: np.ndarray, starts: np.ndarray
) -> dict[str, np.ndarray]:
    """Rates per resample (rows) and group (columns); inputs sorted by group."""
    n = _group_sums(w, 1.0, starts)
    events = _group_sums(w, y, starts)
    expected = _group_sums(w, p, starts)
    flagged = _group_sums(w, flag, starts)
    tp = _group_sums(w, y * flag, starts)
    return {
        "prevalence": _ratio(events, n),
        "mean_predicted": _ratio(expected, n),
        "oe_ratio": _ratio(events, expected),
        "fpr": _ratio(flagged - tp, n - events),
        "fnr": _ratio(events - tp, events),
        "selection_rate": _ratio(flagged, n),
        "ppv": _ratio(tp, flagged),
    }


def _auroc_by_group(
    w: np.ndarray, y: np.ndarray, block_starts: np.ndarray, block_group_starts: np.ndarray
) -> np.ndarray:
    """AUROC per resample and group; people sorted by (group, score)."""
    pos = np.add.reduceat(w * y, block_starts, axis=1)
    neg = np.add.reduceat(w * (1 - y), block_starts, axis=1)
    running = np.cumsum(neg, axis=1) - neg
    # Non-events scoring lower within the same group: subtract the running total at group start.
    group_of_block = np.repeat(
        np.arange(len(block_group_starts)), np.diff(np.r_[block_group_starts, pos.shape[1]])
    )
    below = running - running[:, block_group_starts][:, group_of_block]
    num = np.add.reduceat(pos * (below + 0.5 * neg), block_group_starts, axis=1)
    den = np.add.reduceat(pos, block_group_starts, axis=1) * np.add.reduceat(
        neg, block_group_starts, axis=1
    )
    return _ratio(num, den)


class Sorted:
    """People put in the orders the group sums need: by group, and by (group, score)."""

    def __init__(self, p: np.ndarray, codes: np.ndarray) -> None:
        self.by_group = np.argsort(codes, kind="stable")
        g_sorted = codes[self.by_group]
        self.starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        self.by_score = np.lexsort((p, codes))
        gs, ps = codes[self.by_score], p[self.by_score]
        new_block = np.r_[True, (gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1])]
        self.block_starts = np.flatnonzero(new_block)
        group_start_people = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        self.block_group_starts = np.searchsorted(self.block_starts, group_start_people)

    def metrics(
        self, w: np.ndarray, y: np.ndarray, p: np.ndarray, flag: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Every metric per row of weights `w` (people in their original order) and group."""
        g = self.by_group
        rates = _rates(w[:, g], y[g], p[g], flag[g], self.starts)
        s = self.by_score
        rates["auroc"] = _auroc_by_group(w[:, s], y[s], self.block_starts, self.block_group_starts)
        return rates


def group_metrics(
    y: np.ndarray, p: np.ndarray, codes: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """Each subgroup metric on the people themselves: arrays of one value per group, by the
    bootstrap's own sums (equal to fairlearn's MetricFrame by group: tests/evaluation)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    flag = (p >= threshold).astype(float)
    once = Sorted(p, codes).metrics(np.ones((1, len(y))), y, p, flag)
    return {k: v[0] for k, v in once.items()}


def group_bootstrap(
    y: np.ndarray,
    p: np.ndarray,
    codes: np.ndarray,
    threshold: float,
    n_boot: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Each subgroup metric on `n_boot` resamples: arrays of shape (n_boot, number of groups).

    `codes` numbers each person's group 0..G-1; every code must occur.
    """
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    n = y.shape[0]
    order = Sorted(p, codes)
    flag = (p >= threshold).astype(float)
    rng = np.random.default_rng(seed)
    block = max(1, _CELLS_PER_BLOCK // max(n, 1))
    parts: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < n_boot:
        rows = min(block, n_boot - done)
        rates = order.metrics(_resample_counts(rng, rows, n), y, p, flag)
        for k, v in rates.items():
            parts.setdefault(k, []).append(v)
        done += rows
    return {k: np.concatenate(v) for k, v in parts.items()}


def quantile_frame(samples: dict[str, np.ndarray], q: float, index: pd.Index) -> pd.DataFrame:
    """One quantile of each metric per group, ignoring resamples where it was undefined (a
    tiny group may have no events in every resample: its interval is NaN, by design)."""
    return pd.DataFrame({k: _nanquantile(v, q) for k, v in samples.items()}, index=index)


def _nanquantile(values: np.ndarray, q: float) -> np.ndarray:
    """np.nanquantile by column, NaN where a column is all NaN, without its warning (a
    warnings filter is process-wide, so the threads computing tables cannot switch it)."""
    out = np.full(values.shape[1], np.nan)
    some = ~np.isnan(values).all(axis=0)
    if some.any():
        out[some] = np.nanquantile(values[:, some], q, axis=0)
    return out
