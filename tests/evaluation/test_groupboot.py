"""The vectorised group sums behind the subgroup intervals (evaluation/groupboot.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from evaluation import groupboot


def _people(seed: int, n: int, groups: int, levels: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    p = rng.integers(1, levels, n) / levels
    y = (rng.random(n) < p).astype(float)
    _, codes = np.unique(rng.integers(0, groups, n), return_inverse=True)
    return y, p, codes, rng.integers(0, 4, n)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    groups=st.integers(1, 5),
    levels=st.sampled_from([3, 50, 10_000]),
)
def test_weights_count_people_as_if_repeated(seed: int, n: int, groups: int, levels: int) -> None:
    """A resample is a row of counts: its metrics are those of the people repeated that often."""
    y, p, codes, counts = _people(seed, n, groups, levels)
    flag = (p >= 0.3).astype(float)
    weighted = groupboot.GroupSums(y, p, codes, flag).metrics(counts[None, :].astype(float))
    keep = np.repeat(np.arange(n), counts)
    assume(np.array_equal(np.unique(codes[keep]), np.unique(codes)))  # every group is drawn
    repeated = groupboot.group_metrics(y[keep], p[keep], codes[keep], 0.3)
    for metric, values in repeated.items():
        np.testing.assert_allclose(weighted[metric][0], values, rtol=1e-9, atol=1e-12)


def test_groupings_share_their_resamples() -> None:
    """Several groupings at once give what each gives alone (the same resamples)."""
    y, p, codes, _ = _people(3, 2000, 6, 200)
    coarse = codes % 2
    together = groupboot.group_bootstraps(y, p, [codes, coarse], 0.2, 30, 9)
    for alone, shared in zip(
        (groupboot.group_bootstrap(y, p, c, 0.2, 30, 9) for c in (codes, coarse)),
        together,
        strict=True,
    ):
        assert alone.keys() == shared.keys()
        for metric in alone:
            np.testing.assert_array_equal(alone[metric], shared[metric])
