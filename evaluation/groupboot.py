"""Bootstrap intervals for subgroup metrics, vectorised over resamples and groups.

fairlearn's own MetricFrame bootstrap (n_boot) calls every metric on every group of every
resample through `np.stack` over single values, which costs Python work per person; on a
cohort of 50,000 people and 200 resamples that takes hours. Here each resample is a row of
counts (weights), and every group's sums for a block of resamples are one product of the
weights with a sparse matrix that puts each person's values in their group's columns (and, for
AUROC, in the column of their score within their group), so the same percentile intervals cost
seconds at 500,000 people. Resampling is of people over the whole validation set, as in
fairlearn, and the same resamples serve every descriptor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy import sparse

from evaluation.metrics import _CELLS_PER_BLOCK, _resample_counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _spread(columns: list[np.ndarray], values: list[np.ndarray], width: int) -> sparse.csr_matrix:
    """A people x `width` matrix: person i has values[k][i] in column columns[k][i]."""
    n = len(columns[0])
    per_row = len(columns)
    return sparse.csr_matrix(
        (np.column_stack(values).ravel(), np.column_stack(columns).ravel(),
         np.arange(0, per_row * n + 1, per_row)),
        shape=(n, width),
    )  # fmt: skip


class GroupSums:
    """The sums every subgroup metric needs, for any row of weights over the people."""

    def __init__(self, y: np.ndarray, p: np.ndarray, codes: np.ndarray, flag: np.ndarray) -> None:
        groups = int(codes.max()) + 1 if len(codes) else 0
        self.groups = groups
        self.rates = _spread(
            [codes + k * groups for k in range(5)],
            [np.ones_like(y), y, p, flag, y * flag],
            5 * groups,
        )
        # AUROC: people in blocks of one group and one score, blocks ordered by (group, score)
        order = np.lexsort((p, codes))
        gs, ps = codes[order], p[order]
        new_block = np.r_[True, (gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1])]
        block = np.empty(len(codes), dtype=np.int64)
        block[order] = np.cumsum(new_block) - 1
        self.blocks = int(new_block.sum())
        self.pos_neg = _spread([block, block + self.blocks], [y, 1 - y], 2 * self.blocks)
        group_start_people = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        self.block_group_starts = np.searchsorted(np.flatnonzero(new_block), group_start_people)

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric per row of weights `w` (resamples) and group (columns)."""
        g = self.groups
        sums = np.asarray(w @ self.rates)
        n, events, expected, flagged, tp = (sums[:, k * g : (k + 1) * g] for k in range(5))
        pos_neg = np.asarray(w @ self.pos_neg)
        pos, neg = pos_neg[:, : self.blocks], pos_neg[:, self.blocks :]
        return {
            "prevalence": _ratio(events, n),
            "mean_predicted": _ratio(expected, n),
            "oe_ratio": _ratio(events, expected),
            "fpr": _ratio(flagged - tp, n - events),
            "fnr": _ratio(events - tp, events),
            "selection_rate": _ratio(flagged, n),
            "ppv": _ratio(tp, flagged),
            "auroc": _auroc_by_group(pos, neg, self.block_group_starts),
        }


def _auroc_by_group(pos: np.ndarray, neg: np.ndarray, block_group_starts: np.ndarray) -> np.ndarray:
    """AUROC per row and group from weighted events and non-events per (group, score) block,
    blocks ordered by (group, score); ties count a half."""
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


def group_metrics(
    y: np.ndarray, p: np.ndarray, codes: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """Each subgroup metric on the people themselves: arrays of one value per group, by the
    bootstrap's own sums (equal to fairlearn's MetricFrame by group: tests/evaluation)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    flag = (p >= threshold).astype(float)
    once = GroupSums(y, p, codes, flag).metrics(np.ones((1, len(y))))
    return {k: v[0] for k, v in once.items()}


def group_bootstraps(
    y: np.ndarray,
    p: np.ndarray,
    codes: Sequence[np.ndarray],
    threshold: float,
    n_boot: int,
    seed: int,
) -> list[dict[str, np.ndarray]]:
    """For each grouping in `codes` (each person's group 0..G-1; every code must occur), each
    subgroup metric on the same `n_boot` resamples: arrays of shape (n_boot, G). The groupings
    of a block of resamples are summed on a thread each (numpy and scipy release the GIL)."""
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    n = y.shape[0]
    flag = (p >= threshold).astype(float)
    sums = [GroupSums(y, p, c, flag) for c in codes]
    rng = np.random.default_rng(seed)
    block = max(1, _CELLS_PER_BLOCK // max(n, 1))
    parts: list[dict[str, list[np.ndarray]]] = [{} for _ in sums]
    done = 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        while done < n_boot:
            rows = min(block, n_boot - done)
            summed = pool.map(GroupSums.metrics, sums, [_resample_counts(rng, rows, n)] * len(sums))
            for found, rates in zip(parts, summed, strict=True):
                for k, v in rates.items():
                    found.setdefault(k, []).append(v)
            done += rows
    return [{k: np.concatenate(v) for k, v in found.items()} for found in parts]


def group_bootstrap(
    y: np.ndarray, p: np.ndarray, codes: np.ndarray, threshold: float, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """group_bootstraps for one grouping."""
    return group_bootstraps(y, p, [codes], threshold, n_boot, seed)[0]


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
