r"""Exact path-dependent TreeSHAP for LightGBM boosters, faster than `pred_contrib`.

The values are LightGBM's `pred_contrib` values, the same definition: the Shapley values of
the game v(S) = sum over leaves of value * prod over the leaf's d distinct path features j of
(o_j(x) if j in S else z_j), where z_j is the product of the cover ratios (child count / node
count) of the path's splits on j and o_j(x) is 1 when x follows all of them, else 0. As in
FastTreeSHAP v2 (arXiv 2109.09847), o(x) is a bit mask, so a leaf's share of each feature's
value depends only on that mask; for a mask M, with Z the product of z over the features
not in M and F(R) = sum over subsets S of R of |S|! (d - |S| - 1)! / d! * prod_{R \ S} z:

    feature k in M:       (1 - z_k) * Z * value * F(M without k)
    feature k not in M:          -  Z * value * F(M)

Each leaf keeps a table of its d shares for each of the 2^d masks, built once per booster.
A row goes down each tree once, pushing the mask of missed splits to every node (one step
per node), then adds d table entries per leaf: O(nodes + leaves x d) per tree against
pred_contrib's O(leaves x depth^2) path arithmetic. Leaves with more distinct features than
the table limit or memory budget allow are computed per row from the elementary symmetric
polynomials of z (O(d^2)), still exactly.

The booster is read from its model text (the arrays LightGBM predicts from); split decisions
mirror LightGBM's Tree::NumericalDecision / CategoricalDecision and its predict buffer (NaN,
zero-as-missing, values within kZeroThreshold of zero, negative or huge categories).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import lightgbm as lgb
import numba
import numpy as np
from numba import njit, prange

MAX_PATH_FEATURES = 63  # a leaf's mask is a uint64
TABLE_MAX_FEATURES = 12  # leaves with more distinct path features are computed without a table
TABLE_BUDGET_BYTES = 64 * 2**20  # per model; leaves are tabled up to the depth that fits
ROW_BLOCK = 32  # rows a thread takes through every tree together (tree data stays in cache)
ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float literal)

# node kinds: LightGBM's decision_type bits (categorical = 1, default left = 2, missing type
# in bits 2-3: 0 none, 1 zero, 2 NaN) folded into one code
MISSING_NONE, MISSING_ZERO, MISSING_NAN, CATEGORICAL = 0, 1, 2, 3


class UnsupportedModel(ValueError):
    """A booster this explainer does not handle; the message says why."""


# --- reading the model text ---------------------------------------------------------------


@dataclass(frozen=True)
class _Tree:
    """One tree's arrays as in LightGBM's model text (children < 0 are ~leaf)."""

    split_feature: np.ndarray
    threshold: np.ndarray
    decision_type: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_value: np.ndarray
    leaf_count: np.ndarray
    internal_count: np.ndarray
    cat_boundaries: np.ndarray
    cat_threshold: np.ndarray

    @property
    def num_leaves(self) -> int:
        return len(self.leaf_value)


def _numbers(fields: dict[str, str], key: str, dtype: Any) -> np.ndarray:
    text = fields.get(key, "").strip()
    return np.array(text.split(), dtype=dtype) if text else np.empty(0, dtype=dtype)


def _parse_tree(block: str, index: int) -> _Tree:
    fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    if fields.get("is_linear", "0").strip() != "0":
        raise UnsupportedModel(f"tree {index} is a linear tree (linear_tree=true)")
    tree = _Tree(
        split_feature=_numbers(fields, "split_feature", np.int32),
        threshold=_numbers(fields, "threshold", np.float64),
        decision_type=_numbers(fields, "decision_type", np.int32),
        left=_numbers(fields, "left_child", np.int32),
        right=_numbers(fields, "right_child", np.int32),
        leaf_value=_numbers(fields, "leaf_value", np.float64),
        leaf_count=_numbers(fields, "leaf_count", np.float64),
        internal_count=_numbers(fields, "internal_count", np.float64),
        cat_boundaries=_numbers(fields, "cat_boundaries", np.int64),
        cat_threshold=_numbers(fields, "cat_threshold", np.uint32),
    )
    if tree.num_leaves != int(fields.get("num_leaves", "-1")):
        raise UnsupportedModel(f"tree {index}: leaf_value does not match num_leaves")
    if tree.num_leaves > 1 and (np.any(tree.leaf_count <= 0) or np.any(tree.internal_count <= 0)):
        raise UnsupportedModel(f"tree {index} has a node with no training rows (count 0)")
    return tree


def _header(text: str) -> dict[str, str]:
    head = text.split("\nTree=", 1)[0]
    out = {}
    for line in head.splitlines():
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def _parse_model(text: str) -> tuple[int, list[_Tree]]:
    """(number of features, trees) of a LightGBM model text, or UnsupportedModel."""
    header = _header(text)
    if header.get("num_tree_per_iteration", "1") != "1":
        raise UnsupportedModel(
            f"{header['num_tree_per_iteration']} trees per iteration (multiclass); "
            "only single-output models"
        )
    if "average_output" in header:
        raise UnsupportedModel("a random-forest model (average_output)")
    if "max_feature_idx" not in header:
        raise UnsupportedModel("no max_feature_idx in the model text")
    body = text.split("\nend of trees", 1)[0]
    blocks = body.split("\nTree=")[1:]
    return int(header["max_feature_idx"]) + 1, [_parse_tree(b, i) for i, b in enumerate(blocks)]


# --- flattening: nodes in breadth-first order, leaves, leaf tables ---------------------------


def _node_kind(decision_type: int) -> int:
    if decision_type & 1:
        return CATEGORICAL
    return {0: MISSING_NONE, 1: MISSING_ZERO, 2: MISSING_NAN}[(decision_type >> 2) & 3]


@dataclass(frozen=True)
class _Walk:
    """One tree walked from the root. A node's slot is the position of its feature among the
    distinct features on the path down to it (in order of first use), so it is the same for
    every leaf below it; a leaf's zero fractions z are per slot."""

    order: list[int]  # internal nodes, breadth first (a parent before its children)
    slot: dict[int, int]  # internal node -> slot of its feature
    leaf_features: list[list[int]]
    leaf_zeros: list[list[float]]


def _walk(tree: _Tree, index: int) -> _Walk:
    order: list[int] = []
    slot: dict[int, int] = {}
    leaf_features: list[list[int]] = [[] for _ in range(tree.num_leaves)]
    leaf_zeros: list[list[float]] = [[] for _ in range(tree.num_leaves)]
    queue: list[tuple[int, list[int], list[float]]] = [(0, [], [])]
    for node, features, zeros in queue:  # the list grows as it is read: breadth first
        order.append(node)
        feature = int(tree.split_feature[node])
        known = feature in features
        slot[node] = features.index(feature) if known else len(features)
        for child in (int(tree.left[node]), int(tree.right[node])):
            count = tree.leaf_count[~child] if child < 0 else tree.internal_count[child]
            ratio = float(count) / float(tree.internal_count[node])
            down_features = features if known else [*features, feature]
            down_zeros = [*zeros] if known else [*zeros, 1.0]
            down_zeros[slot[node]] *= ratio
            if child >= 0:
                queue.append((child, down_features, down_zeros))
                continue
            if len(down_features) > MAX_PATH_FEATURES:
                raise UnsupportedModel(
                    f"tree {index} has a leaf with {len(down_features)} distinct features on "
                    f"its path; at most {MAX_PATH_FEATURES}"
                )
            leaf_features[~child], leaf_zeros[~child] = down_features, down_zeros
    return _Walk(order, slot, leaf_features, leaf_zeros)


@dataclass(frozen=True)
class _Forest:
    """Every tree's nodes and leaves in flat arrays. Within a tree, a node's children are
    targets: below the tree's node count an internal node (breadth-first position), from it
    on a leaf (node count + leaf index)."""

    num_features: int
    tree_node_start: np.ndarray
    tree_leaf_start: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_kind: np.ndarray
    node_default_left: np.ndarray
    node_cat_start: np.ndarray
    node_cat_len: np.ndarray
    node_slot: np.ndarray
    node_left: np.ndarray
    node_right: np.ndarray
    cat_bits: np.ndarray
    leaf_value: np.ndarray
    leaf_slot_start: np.ndarray
    leaf_slots: np.ndarray
    slot_feature: np.ndarray
    slot_zero: np.ndarray
    expected_value: float

    @classmethod
    def from_text(cls, text: str) -> _Forest:
        num_features, trees = _parse_model(text)
        columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        tree_node_start, tree_leaf_start, cat_bits = [0], [0], []
        expected, words = 0.0, 0
        for index, tree in enumerate(trees):
            expected += _expected_value(tree)
            if tree.num_leaves > 1:  # a one-leaf tree adds its value to the base only
                _add_tree(columns, tree, _walk(tree, index), words)
                cat_bits.append(tree.cat_threshold)
                words += len(tree.cat_threshold)
            tree_node_start.append(len(columns["node_feature"]))
            tree_leaf_start.append(len(columns["leaf_value"]))
        columns["leaf_slot_start"].append(len(columns["slot_feature"]))
        arrays = {
            name: np.asarray(column, dtype=_COLUMNS[name]) for name, column in columns.items()
        }
        bits = np.concatenate(cat_bits) if cat_bits else np.empty(0)
        return cls(
            num_features=num_features,
            tree_node_start=np.asarray(tree_node_start, dtype=np.int32),
            tree_leaf_start=np.asarray(tree_leaf_start, dtype=np.int32),
            cat_bits=bits.astype(np.uint32),
            expected_value=expected,
            **arrays,
        )

    @cached_property
    def scratch_size(self) -> int:
        """The most nodes plus leaves of one tree (a row's per-tree scratch)."""
        nodes = np.diff(self.tree_node_start)
        leaves = np.diff(self.tree_leaf_start)
        return int(np.max(nodes + leaves, initial=0)) + 1

    def arrays(self) -> tuple[np.ndarray, ...]:
        """What the kernels read, in _tree_row's order."""
        return (
            self.tree_node_start, self.tree_leaf_start, self.node_feature, self.node_threshold,
            self.node_kind, self.node_default_left, self.node_cat_start, self.node_cat_len,
            self.node_slot, self.node_left, self.node_right, self.cat_bits, self.leaf_value,
            self.leaf_slot_start, self.leaf_slots, self.slot_feature, self.slot_zero,
        )  # fmt: skip


_COLUMNS: dict[str, Any] = {
    "node_feature": np.int32,
    "node_threshold": np.float64,
    "node_kind": np.int8,
    "node_default_left": np.bool_,
    "node_cat_start": np.int32,
    "node_cat_len": np.int32,
    "node_slot": np.int8,
    "node_left": np.int32,
    "node_right": np.int32,
    "leaf_value": np.float64,
    "leaf_slot_start": np.int32,
    "leaf_slots": np.int8,
    "slot_feature": np.int32,
    "slot_zero": np.float64,
}


def _expected_value(tree: _Tree) -> float:
    """LightGBM's Tree::ExpectedValue: leaves weighted by their share of the root's rows."""
    if tree.num_leaves == 1:
        return float(tree.leaf_value[0])
    return float(np.sum((tree.leaf_count / tree.internal_count[0]) * tree.leaf_value))


def _add_tree(columns: dict[str, list[Any]], tree: _Tree, walk: _Walk, words: int) -> None:
    nodes = len(walk.order)
    position = {node: i for i, node in enumerate(walk.order)}

    def target(child: int) -> int:
        return nodes + ~child if child < 0 else position[child]

    for node in walk.order:
        decision = int(tree.decision_type[node])
        kind = _node_kind(decision)
        start, length = 0, 0
        if kind == CATEGORICAL:
            cat = int(tree.threshold[node])
            start = words + int(tree.cat_boundaries[cat])
            length = int(tree.cat_boundaries[cat + 1] - tree.cat_boundaries[cat])
        columns["node_feature"].append(int(tree.split_feature[node]))
        columns["node_threshold"].append(float(tree.threshold[node]))
        columns["node_kind"].append(kind)
        columns["node_default_left"].append(bool(decision & 2))
        columns["node_cat_start"].append(start)
        columns["node_cat_len"].append(length)
        columns["node_slot"].append(walk.slot[node])
        columns["node_left"].append(target(int(tree.left[node])))
        columns["node_right"].append(target(int(tree.right[node])))
    for leaf in range(tree.num_leaves):
        columns["leaf_value"].append(float(tree.leaf_value[leaf]))
        columns["leaf_slot_start"].append(len(columns["slot_feature"]))
        columns["leaf_slots"].append(len(walk.leaf_features[leaf]))
        columns["slot_feature"].extend(walk.leaf_features[leaf])
        columns["slot_zero"].extend(walk.leaf_zeros[leaf])


def _shapley_weights(most: int) -> np.ndarray:
    """w[d, s] = s! (d - s - 1)! / d!, the weight of a coalition of s of d features."""
    w = np.zeros((most + 1, most + 1))
    for d in range(1, most + 1):
        for s in range(d):
            w[d, s] = 1.0 / (d * math.comb(d - 1, s))
    return w


def _table_sizes(leaf_slots: np.ndarray) -> np.ndarray:
    d = leaf_slots.astype(np.int64)
    return np.left_shift(np.int64(1), d) * d


def _table_starts(leaf_slots: np.ndarray, max_features: int, budget_bytes: int) -> np.ndarray:
    """Where each leaf's table starts (-1: none). Leaves with up to max_features distinct
    features get one, fewer when the tables would pass the budget."""
    sizes = _table_sizes(leaf_slots)
    limit = max_features
    while limit >= 0 and int(np.sum(sizes[leaf_slots <= limit])) * 8 > budget_bytes:
        limit -= 1
    tabled = leaf_slots <= limit
    kept = np.where(tabled, sizes, 0)
    return np.where(tabled, np.cumsum(kept) - kept, -1).astype(np.int64)


# --- numba kernels ----------------------------------------------------------------------------


def _kernel(**options: Any) -> Any:
    """njit with numba's on-disk cache (models/__pycache__, or the user's cache folder when
    that is read-only), so only the first process on a machine pays the compile; without a
    writable folder each process compiles."""

    def wrap(function: Any) -> Any:
        try:
            return njit(cache=True, **options)(function)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            return njit(**options)(function)

    return wrap


@_kernel(nogil=True)
def _fill_tables(leaf_value, leaf_slot_start, leaf_slots, slot_zero, table_start, weights, table):
    """table[start + miss * d + k]: a tabled leaf's share of the value of its k-th feature
    when the row follows the leaf's splits on all its features but those in miss."""
    for leaf in range(len(leaf_value)):
        start = table_start[leaf]
        if start < 0:
            continue
        d = np.int64(leaf_slots[leaf])
        z = slot_zero[leaf_slot_start[leaf] : leaf_slot_start[leaf] + d]
        size = np.int64(1) << d
        poly = np.zeros((size, d + 1))  # elementary symmetric polynomials of z over a subset
        poly[0, 0] = 1.0
        f = np.empty(size)  # value * F(subset)
        f[0] = leaf_value[leaf] * weights[d, 0]
        for subset in range(1, size):
            k = 0
            while not (subset >> k) & 1:
                k += 1
            rest = subset ^ (1 << k)
            poly[subset, 0] = 1.0
            for j in range(1, d + 1):
                poly[subset, j] = poly[rest, j] + z[k] * poly[rest, j - 1]
            count = 0
            for j in range(d):
                count += (subset >> j) & 1
            total = 0.0
            for s in range(count + 1):
                total += weights[d, s] * poly[subset, count - s]
            f[subset] = leaf_value[leaf] * total
        full = size - 1
        for mask in range(size):
            away = 1.0  # product of z over the features not in mask
            for k in range(d):
                if not (mask >> k) & 1:
                    away *= z[k]
            for k in range(d):
                followed = (mask >> k) & 1
                share = (1.0 - z[k]) * away * f[mask ^ (1 << k)] if followed else -away * f[mask]
                table[start + (full ^ mask) * d + k] = share


@njit(inline="always")
def _goes_left(value, kind, default_left, threshold, cat_bits, cat_start, cat_len):
    """LightGBM's Tree::Decision on a predict-buffer value."""
    if kind == CATEGORICAL:
        if np.isnan(value) or value <= -1.0 or value >= 2147483648.0:
            return False  # NaN, negative after truncation, or outside int: right
        category = np.int64(value)  # truncation, as static_cast<int>
        word = category >> 5
        if word >= cat_len:
            return False
        return (cat_bits[cat_start + word] >> np.uint32(category & 31)) & np.uint32(1) == 1
    if np.isnan(value) and kind != MISSING_NAN:
        value = 0.0
    if (kind == MISSING_ZERO and -ZERO_THRESHOLD <= value <= ZERO_THRESHOLD) or (
        kind == MISSING_NAN and np.isnan(value)
    ):
        return default_left
    return value <= threshold


@njit(inline="always")
def _leaf_without_table(phi, mask, d, features, z, value, weights, e, q):
    """One leaf's shares from the elementary symmetric polynomials of z over the mask."""
    away = 1.0
    size = 0
    e[0] = 1.0
    for k in range(d):
        if (mask >> np.uint64(k)) & np.uint64(1):
            size += 1
            e[size] = 0.0
            for j in range(size, 0, -1):
                e[j] += z[k] * e[j - 1]
        else:
            away *= z[k]
    whole = 0.0
    for s in range(size + 1):
        whole += weights[d, s] * e[size - s]
    for k in range(d):
        if (mask >> np.uint64(k)) & np.uint64(1):
            q[0] = 1.0  # e divided by (1 + z_k t): the polynomial without feature k
            for j in range(1, size):
                q[j] = e[j] - z[k] * q[j - 1]
            part = 0.0
            for s in range(size):
                part += weights[d, s] * q[size - 1 - s]
            phi[features[k]] += (1.0 - z[k]) * away * value * part
        else:
            phi[features[k]] -= away * value * whole


@njit(inline="always")
def _tree_row(row, phi, tree, misses, f, table_start, table, weights, e, q):
    """Add one tree's SHAP values for one row to phi."""
    (
        tree_node_start, tree_leaf_start, node_feature, node_threshold, node_kind,
        node_default_left, node_cat_start, node_cat_len, node_slot, node_left, node_right,
        cat_bits, leaf_value, leaf_slot_start, leaf_slots, slot_feature, slot_zero,
    ) = f  # fmt: skip
    first = tree_node_start[tree]
    nodes = tree_node_start[tree + 1] - first
    misses[0] = np.uint64(0)  # per slot, the features with a split on the path not followed
    for i in range(nodes):
        g = first + i
        value = row[node_feature[g]]
        if abs(value) <= ZERO_THRESHOLD:
            value = 0.0  # LightGBM's predict buffer keeps only |x| > kZeroThreshold and NaN
        left = _goes_left(
            value, node_kind[g], node_default_left[g], node_threshold[g], cat_bits,
            node_cat_start[g], node_cat_len[g],
        )  # fmt: skip
        keep = misses[i]
        lose = keep | (np.uint64(1) << np.uint64(node_slot[g]))
        misses[node_left[g]] = keep if left else lose
        misses[node_right[g]] = lose if left else keep
    for j in range(tree_leaf_start[tree + 1] - tree_leaf_start[tree]):
        leaf = tree_leaf_start[tree] + j
        d = np.int64(leaf_slots[leaf])
        miss = misses[nodes + j]
        s0 = leaf_slot_start[leaf]
        start = table_start[leaf]
        if start < 0:
            mask = ((np.uint64(1) << np.uint64(d)) - np.uint64(1)) ^ miss
            _leaf_without_table(
                phi, mask, d, slot_feature[s0 : s0 + d], slot_zero[s0 : s0 + d],
                leaf_value[leaf], weights, e, q,
            )  # fmt: skip
            continue
        base = start + np.int64(miss) * d
        for k in range(d):
            phi[slot_feature[s0 + k]] += table[base + k]


@njit(inline="always")
def _block(x, out, low, high, f, scratch, table_start, table, weights):
    """Rows low..high through every tree, a tree at a time (its nodes stay in cache)."""
    misses = np.empty(scratch, dtype=np.uint64)
    e = np.empty(MAX_PATH_FEATURES + 2)
    q = np.empty(MAX_PATH_FEATURES + 2)
    for tree in range(len(f[0]) - 1):
        for r in range(low, high):
            _tree_row(x[r], out[r], tree, misses, f, table_start, table, weights, e, q)


@_kernel(parallel=True, nogil=True)
def _shap_parallel(x, out, f, scratch, table_start, table, weights):
    """Add every row's SHAP values to out[:, :features], blocks of rows across threads."""
    rows = x.shape[0]
    for b in prange((rows + ROW_BLOCK - 1) // ROW_BLOCK):
        low = b * ROW_BLOCK
        high = min(rows, low + ROW_BLOCK)
        _block(x, out, low, high, f, scratch, table_start, table, weights)


@_kernel(nogil=True)
def _shap_serial(x, out, f, scratch, table_start, table, weights):
    """_shap_parallel in the calling thread: no thread pool to wake for a few rows."""
    rows = x.shape[0]
    for low in range(0, rows, ROW_BLOCK):
        _block(x, out, low, min(rows, low + ROW_BLOCK), f, scratch, table_start, table, weights)


# --- the explainer ----------------------------------------------------------------------------


def lightgbm_threads() -> int:
    """The threads LightGBM's predict uses when not told: OpenMP's default, i.e.
    OMP_NUM_THREADS if set, else the cores this process may run on."""
    setting = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class TreeExplainer:
    """Exact TreeSHAP of one LightGBM booster; `contributions` matches pred_contrib."""

    forest: _Forest
    table_start: np.ndarray  # per leaf, where its table starts in `table` (-1: none)
    table: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_booster(
        cls,
        booster: lgb.Booster,
        table_max_features: int = TABLE_MAX_FEATURES,
        table_budget_bytes: int = TABLE_BUDGET_BYTES,
    ) -> TreeExplainer:
        """Read the trees predict would use (best_iteration when set) once; raises
        UnsupportedModel naming the reason for a model this cannot explain."""
        return cls.from_model_text(_model_text(booster), table_max_features, table_budget_bytes)

    @classmethod
    def from_model_text(
        cls,
        text: str,
        table_max_features: int = TABLE_MAX_FEATURES,
        table_budget_bytes: int = TABLE_BUDGET_BYTES,
    ) -> TreeExplainer:
        forest = _Forest.from_text(text)
        weights = _shapley_weights(max(int(np.max(forest.leaf_slots, initial=0)), 1))
        table_start = _table_starts(forest.leaf_slots, table_max_features, table_budget_bytes)
        table = np.zeros(int(np.sum(_table_sizes(forest.leaf_slots)[table_start >= 0])))
        _fill_tables(
            forest.leaf_value, forest.leaf_slot_start, forest.leaf_slots, forest.slot_zero,
            table_start, weights, table,
        )  # fmt: skip
        return cls(forest, table_start, table, weights)

    @property
    def num_features(self) -> int:
        return self.forest.num_features

    @property
    def expected_value(self) -> float:
        return self.forest.expected_value

    @property
    def tabled_share(self) -> float:
        """The share of leaves explained from a table (the rest are computed per row)."""
        return float(np.mean(self.table_start >= 0)) if len(self.table_start) else 1.0

    @property
    def tables_bytes(self) -> int:
        return int(self.table.nbytes)

    def contributions(self, x: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(rows, features + 1): each feature's SHAP value (raw score), then the expected
        value; the same as booster.predict(x, pred_contrib=True). Runs on `threads` threads,
        by default as many as LightGBM's predict would use."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        matrix = _as_matrix(x, self.num_features)
        out = np.zeros((matrix.shape[0], self.num_features + 1))
        out[:, -1] = self.forest.expected_value
        if matrix.shape[0] == 0:
            return out
        args = (self.forest.arrays(), self.forest.scratch_size, self.table_start, self.table)
        blocks = -(-matrix.shape[0] // ROW_BLOCK)
        most = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        threads = min(threads or lightgbm_threads(), blocks, most)
        if threads == 1:
            _shap_serial(matrix, out, *args, self.weights)
        else:
            numba.set_num_threads(threads)
            _shap_parallel(matrix, out, *args, self.weights)
        return out


def _model_text(booster: lgb.Booster) -> str:
    """The model text of the iterations predict uses by default."""
    iteration = booster.best_iteration if booster.best_iteration > 0 else -1
    return booster.model_to_string(num_iteration=iteration)


def _as_matrix(x: np.ndarray, num_features: int) -> np.ndarray:
    """x as LightGBM's predict reads it: float32 and float64 kept, other dtypes via float32."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of rows, got {x.ndim} dimension(s)")
    if x.shape[1] != num_features:
        raise ValueError(
            f"the rows have {x.shape[1]} features; the model was trained on {num_features}"
        )
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float64)


def unsupported_reason(booster: lgb.Booster) -> str | None:
    """Why TreeExplainer cannot explain this booster, or None when it can."""
    try:
        _Forest.from_text(_model_text(booster))
    except UnsupportedModel as error:
        return str(error)
    return None
