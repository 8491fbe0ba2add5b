"""Exact path-dependent TreeSHAP for LightGBM boosters, faster than `pred_contrib`.

The values are LightGBM's `pred_contrib` values (the same definition: Shapley values of the
game v(S) = sum over leaves of value * prod over the leaf's path features j of o_j(x) if j is
in S else z_j, where z_j is the product of the cover ratios of the path's splits on j and
o_j(x) is 1 when x follows all of them). As in FastTreeSHAP v2 (arXiv 2109.09847), o(x) is a
bit mask, so a leaf's share of every feature's value depends only on that mask:

    feature k in the mask:     (1 - z_k) * Z * value * F(mask without k)
    feature k not in the mask:      -     Z * value * F(mask)

with Z the product of z over the features not in the mask and F(R) = sum over subsets S of R
of |S|! (d - |S| - 1)! / d! * prod over R \\ S of z (d = the leaf's distinct path features).
F is tabled once per leaf (2^d numbers), so a row costs O(leaves x d) per tree against
pred_contrib's O(leaves x depth^2). Leaves with too many distinct features for the table
memory budget compute F from the elementary symmetric polynomials of z instead (O(d^2)).

The booster is read from its model text (the same arrays LightGBM predicts from); split
decisions mirror LightGBM's Tree::NumericalDecision / CategoricalDecision, including NaN,
zero-as-missing and negative categories.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
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
    if tree.num_leaves > 1 and (
        np.any(tree.leaf_count <= 0) or np.any(tree.internal_count <= 0)
    ):
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


# --- flattening: nodes, leaf paths and leaf tables ------------------------------------------


def _node_kind(decision_type: int) -> int:
    if decision_type & 1:
        return CATEGORICAL
    missing = (decision_type >> 2) & 3
    return {0: MISSING_NONE, 1: MISSING_ZERO, 2: MISSING_NAN}[missing]


def _leaf_paths(tree: _Tree) -> list[list[tuple[int, bool]]]:
    """For each leaf, the (node, went left) pairs from the root down."""
    paths: list[list[tuple[int, bool]]] = [[] for _ in range(tree.num_leaves)]
    stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])] if tree.num_leaves > 1 else []
    while stack:
        node, path = stack.pop()
        for child, left in ((int(tree.left[node]), True), (int(tree.right[node]), False)):
            step = [*path, (node, left)]
            if child < 0:
                paths[~child] = step
            else:
                stack.append((child, step))
    return paths


@dataclass
class _Builder:
    """Collects the flat arrays tree by tree."""

    node_start: list[int]
    node_feature: list[int]
    node_threshold: list[float]
    node_kind: list[int]
    node_default_left: list[bool]
    node_cat_start: list[int]
    node_cat_len: list[int]
    cat_bits: list[np.ndarray]
    leaf_start: list[int]
    leaf_value: list[float]
    leaf_path_start: list[int]
    path_node: list[int]
    path_left: list[bool]
    path_slot: list[int]
    leaf_slot_start: list[int]
    leaf_slots: list[int]
    slot_feature: list[int]
    slot_zero: list[float]
    expected_value: float = 0.0
    cat_words: int = 0

    @classmethod
    def empty(cls) -> _Builder:
        lists = {name: [] for name in cls.__dataclass_fields__ if name not in _SCALARS}
        return cls(**lists)  # type: ignore[arg-type]

    def add(self, index: int, tree: _Tree) -> None:
        self.node_start.append(len(self.node_feature))
        self.leaf_start.append(len(self.leaf_value))
        if tree.num_leaves == 1:  # LightGBM: ExpectedValue is the leaf, no SHAP values
            self.expected_value += float(tree.leaf_value[0])
            return
        self.expected_value += float(
            np.sum((tree.leaf_count / tree.internal_count[0]) * tree.leaf_value)
        )
        self._add_nodes(tree)
        for leaf, path in enumerate(_leaf_paths(tree)):
            self._add_leaf(index, tree, float(tree.leaf_value[leaf]), float(tree.leaf_count[leaf]), path)

    def _add_nodes(self, tree: _Tree) -> None:
        words = self.cat_words
        for node in range(tree.num_leaves - 1):
            kind = _node_kind(int(tree.decision_type[node]))
            self.node_feature.append(int(tree.split_feature[node]))
            self.node_threshold.append(float(tree.threshold[node]))
            self.node_kind.append(kind)
            self.node_default_left.append(bool(int(tree.decision_type[node]) & 2))
            start, length = 0, 0
            if kind == CATEGORICAL:
                cat = int(tree.threshold[node])
                start = words + int(tree.cat_boundaries[cat])
                length = int(tree.cat_boundaries[cat + 1] - tree.cat_boundaries[cat])
            self.node_cat_start.append(start)
            self.node_cat_len.append(length)
        self.cat_bits.append(tree.cat_threshold)
        self.cat_words += len(tree.cat_threshold)

    def _add_leaf(
        self, index: int, tree: _Tree, value: float, count: float, path: list[tuple[int, bool]]
    ) -> None:
        self.leaf_value.append(value)
        self.leaf_path_start.append(len(self.path_node))
        self.leaf_slot_start.append(len(self.slot_feature))
        slots: dict[int, int] = {}
        parent_count = float(tree.internal_count[0])
        for depth, (node, left) in enumerate(path):
            feature = int(tree.split_feature[node])
            if feature not in slots:
                slots[feature] = len(slots)
                self.slot_feature.append(feature)
                self.slot_zero.append(1.0)
            child = path[depth + 1][0] if depth + 1 < len(path) else None
            child_count = float(tree.internal_count[child]) if child is not None else count
            self.slot_zero[-len(slots) + slots[feature]] *= child_count / parent_count
            parent_count = child_count
            self.path_node.append(node)
            self.path_left.append(left)
            self.path_slot.append(slots[feature])
        if len(slots) > MAX_PATH_FEATURES:
            raise UnsupportedModel(
                f"tree {index} has a leaf with {len(slots)} distinct features on its path; "
                f"at most {MAX_PATH_FEATURES}"
            )
        self.leaf_slots.append(len(slots))


_SCALARS = {"expected_value", "cat_words"}


def _i32(values: list[Any]) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


@dataclass(frozen=True)
class _Forest:
    """Every tree's nodes and leaves in flat arrays (indices into them are global)."""

    num_features: int
    tree_node_start: np.ndarray
    tree_leaf_start: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_kind: np.ndarray
    node_default_left: np.ndarray
    node_cat_start: np.ndarray
    node_cat_len: np.ndarray
    cat_bits: np.ndarray
    leaf_value: np.ndarray
    leaf_path_start: np.ndarray
    path_node: np.ndarray
    path_left: np.ndarray
    path_slot: np.ndarray
    leaf_slot_start: np.ndarray
    leaf_slots: np.ndarray
    slot_feature: np.ndarray
    slot_zero: np.ndarray
    expected_value: float

    @classmethod
    def from_text(cls, text: str) -> _Forest:
        num_features, trees = _parse_model(text)
        b = _Builder.empty()
        for index, tree in enumerate(trees):
            b.add(index, tree)
        b.node_start.append(len(b.node_feature))
        b.leaf_start.append(len(b.leaf_value))
        b.leaf_path_start.append(len(b.path_node))
        b.leaf_slot_start.append(len(b.slot_feature))
        bits = np.concatenate(b.cat_bits) if b.cat_bits else np.empty(0, dtype=np.uint32)
        return cls(
            num_features=num_features,
            tree_node_start=_i32(b.node_start),
            tree_leaf_start=_i32(b.leaf_start),
            node_feature=_i32(b.node_feature),
            node_threshold=np.asarray(b.node_threshold, dtype=np.float64),
            node_kind=np.asarray(b.node_kind, dtype=np.int8),
            node_default_left=np.asarray(b.node_default_left, dtype=np.bool_),
            node_cat_start=_i32(b.node_cat_start),
            node_cat_len=_i32(b.node_cat_len),
            cat_bits=bits.astype(np.uint32),
            leaf_value=np.asarray(b.leaf_value, dtype=np.float64),
            leaf_path_start=_i32(b.leaf_path_start),
            path_node=_i32(b.path_node),
            path_left=np.asarray(b.path_left, dtype=np.bool_),
            path_slot=np.asarray(b.path_slot, dtype=np.int8),
            leaf_slot_start=_i32(b.leaf_slot_start),
            leaf_slots=np.asarray(b.leaf_slots, dtype=np.int8),
            slot_feature=_i32(b.slot_feature),
            slot_zero=np.asarray(b.slot_zero, dtype=np.float64),
            expected_value=b.expected_value,
        )

    @property
    def num_trees(self) -> int:
        return len(self.tree_node_start) - 1

    @property
    def max_tree_nodes(self) -> int:
        return int(np.max(np.diff(self.tree_node_start), initial=0))


def _shapley_weights(most: int) -> np.ndarray:
    """w[d, s] = s! (d - s - 1)! / d!, the weight of a coalition of s of d features."""
    w = np.zeros((most + 1, most + 1))
    for d in range(1, most + 1):
        for s in range(d):
            w[d, s] = 1.0 / (d * math.comb(d - 1, s))
    return w


def _table_starts(leaf_slots: np.ndarray) -> np.ndarray:
    """Where each leaf's 2^d table starts (-1: no table), the deepest leaves first left out
    until the tables fit the budget."""
    limit = TABLE_MAX_FEATURES
    sizes = np.left_shift(np.int64(1), leaf_slots.astype(np.int64))
    while limit >= 0 and int(np.sum(sizes[leaf_slots <= limit])) * 8 > TABLE_BUDGET_BYTES:
        limit -= 1
    tabled = leaf_slots <= limit
    starts = np.full(len(leaf_slots), -1, dtype=np.int64)
    offsets = np.cumsum(np.where(tabled, sizes, 0)) - np.where(tabled, sizes, 0)
    starts[tabled] = offsets[tabled]
    return starts


# --- numba kernels ----------------------------------------------------------------------------


@njit(cache=False, nogil=True)
def _fill_tables(  # pragma: no cover - compiled
    leaf_value, leaf_slot_start, leaf_slots, slot_zero, table_start, weights, table
):
    """table[start + R] = value * F(R) for every subset R of a tabled leaf's features."""
    for leaf in range(len(leaf_value)):
        start = table_start[leaf]
        if start < 0:
            continue
        d = leaf_slots[leaf]
        z = slot_zero[leaf_slot_start[leaf] : leaf_slot_start[leaf] + d]
        size = 1 << d
        poly = np.zeros((size, d + 1))  # elementary symmetric polynomials of z over R
        poly[0, 0] = 1.0
        for subset in range(1, size):
            k = 0
            while not (subset >> k) & 1:
                k += 1
            rest = subset ^ (1 << k)
            poly[subset, 0] = 1.0
            for j in range(1, d + 1):
                poly[subset, j] = poly[rest, j] + z[k] * poly[rest, j - 1]
        for subset in range(size):
            count = 0
            for k in range(d):
                count += (subset >> k) & 1
            total = 0.0
            for s in range(count + 1):
                total += weights[d, s] * poly[subset, count - s]
            table[start + subset] = leaf_value[leaf] * total


@njit(inline="always")
def _goes_left(value, kind, default_left, threshold, cat_bits, cat_start, cat_len):  # pragma: no cover
    """LightGBM's Tree::Decision on a predict-buffer value."""
    if kind == CATEGORICAL:
        if np.isnan(value) or value <= -1.0 or value >= 2147483648.0:
            return False  # NaN, negative (after truncation) or out of int range: right
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
def _leaf_without_table(phi, mask, d, features, z, value, zout, weights, e, q):  # pragma: no cover
    """One leaf's shares from the elementary symmetric polynomials of z over the mask."""
    size = 0
    e[0] = 1.0
    for k in range(d):
        if (mask >> np.uint64(k)) & np.uint64(1):
            size += 1
            e[size] = 0.0
            for j in range(size, 0, -1):
                e[j] += z[k] * e[j - 1]
    whole = 0.0
    for s in range(size + 1):
        whole += weights[d, s] * e[size - s]
    for k in range(d):
        if (mask >> np.uint64(k)) & np.uint64(1):
            q[0] = 1.0  # e divided by (1 + z_k t): the polynomial without k
            for j in range(1, size):
                q[j] = e[j] - z[k] * q[j - 1]
            part = 0.0
            for s in range(size):
                part += weights[d, s] * q[size - 1 - s]
            phi[features[k]] += (1.0 - z[k]) * zout * value * part
        else:
            phi[features[k]] -= zout * value * whole


@njit(inline="always")
def _tree_row(  # pragma: no cover - compiled
    row, phi, tree, goes, f, table_start, table, weights, e, q
):
    (
        tree_node_start, tree_leaf_start, node_feature, node_threshold, node_kind,
        node_default_left, node_cat_start, node_cat_len, cat_bits, leaf_value,
        leaf_path_start, path_node, path_left, path_slot, leaf_slot_start, leaf_slots,
        slot_feature, slot_zero,
    ) = f  # fmt: skip
    first = tree_node_start[tree]
    for node in range(tree_node_start[tree + 1] - first):
        g = first + node
        value = row[node_feature[g]]
        if abs(value) <= ZERO_THRESHOLD:
            value = 0.0  # LightGBM's predict buffer keeps only |x| > kZeroThreshold and NaN
        goes[node] = _goes_left(
            value, node_kind[g], node_default_left[g], node_threshold[g], cat_bits,
            node_cat_start[g], node_cat_len[g],
        )  # fmt: skip
    for leaf in range(tree_leaf_start[tree], tree_leaf_start[tree + 1]):
        d = leaf_slots[leaf]
        mask = (np.uint64(1) << np.uint64(d)) - np.uint64(1)
        for p in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
            if goes[path_node[p]] != path_left[p]:
                mask &= ~(np.uint64(1) << np.uint64(path_slot[p]))
        s0 = leaf_slot_start[leaf]
        zout = 1.0
        for k in range(d):
            if not (mask >> np.uint64(k)) & np.uint64(1):
                zout *= slot_zero[s0 + k]
        start = table_start[leaf]
        if start < 0:
            _leaf_without_table(
                phi, mask, d, slot_feature[s0 : s0 + d], slot_zero[s0 : s0 + d],
                leaf_value[leaf], zout, weights, e, q,
            )  # fmt: skip
            continue
        away = zout * table[start + np.int64(mask)]
        for k in range(d):
            bit = np.uint64(1) << np.uint64(k)
            if mask & bit:
                phi[slot_feature[s0 + k]] += (
                    (1.0 - slot_zero[s0 + k]) * zout * table[start + np.int64(mask ^ bit)]
                )
            else:
                phi[slot_feature[s0 + k]] -= away


@njit(parallel=True, nogil=True)
def _shap_rows(x, out, f, max_nodes, table_start, table, weights):  # pragma: no cover
    """SHAP values of every row of x into out[:, :features] (out starts at zero)."""
    rows = x.shape[0]
    trees = len(f[0]) - 1
    blocks = (rows + ROW_BLOCK - 1) // ROW_BLOCK
    for b in prange(blocks):
        goes = np.empty(max(max_nodes, 1), dtype=np.bool_)
        e = np.empty(MAX_PATH_FEATURES + 2)
        q = np.empty(MAX_PATH_FEATURES + 2)
        low = b * ROW_BLOCK
        high = min(rows, low + ROW_BLOCK)
        for tree in range(trees):
            for r in range(low, high):
                _tree_row(x[r], out[r], tree, goes, f, table_start, table, weights, e, q)


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
    table_start: np.ndarray
    table: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> TreeExplainer:
        """Parse the trees predict would use (best_iteration when set) once; raises
        UnsupportedModel naming the reason for a model this cannot explain."""
        iteration = booster.best_iteration if booster.best_iteration > 0 else -1
        return cls.from_model_text(booster.model_to_string(num_iteration=iteration))

    @classmethod
    def from_model_text(cls, text: str) -> TreeExplainer:
        forest = _Forest.from_text(text)
        most = int(np.max(forest.leaf_slots, initial=0))
        weights = _shapley_weights(max(most, 1))
        table_start = _table_starts(forest.leaf_slots)
        sizes = np.left_shift(np.int64(1), forest.leaf_slots.astype(np.int64))
        table = np.zeros(int(np.sum(sizes[table_start >= 0])))
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
        """The share of leaves explained from a table (the rest without one)."""
        return float(np.mean(self.table_start >= 0)) if len(self.table_start) else 1.0

    def contributions(self, x: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(rows, features + 1): each feature's SHAP value (raw score), then the expected
        value; the same as booster.predict(x, pred_contrib=True)."""
        matrix = _as_matrix(x, self.num_features)
        out = np.zeros((matrix.shape[0], self.num_features + 1))
        out[:, -1] = self.forest.expected_value
        if matrix.shape[0] == 0:
            return out
        numba.set_num_threads(min(threads or lightgbm_threads(), numba.config.NUMBA_NUM_THREADS))
        _shap_rows(
            matrix, out, self._arrays(), self.forest.max_tree_nodes, self.table_start,
            self.table, self.weights,
        )  # fmt: skip
        return out

    def _arrays(self) -> tuple[np.ndarray, ...]:
        f = self.forest
        return (
            f.tree_node_start, f.tree_leaf_start, f.node_feature, f.node_threshold, f.node_kind,
            f.node_default_left, f.node_cat_start, f.node_cat_len, f.cat_bits, f.leaf_value,
            f.leaf_path_start, f.path_node, f.path_left, f.path_slot, f.leaf_slot_start,
            f.leaf_slots, f.slot_feature, f.slot_zero,
        )  # fmt: skip


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
        iteration = booster.best_iteration if booster.best_iteration > 0 else -1
        _parse_model(booster.model_to_string(num_iteration=iteration))
    except UnsupportedModel as error:
        return str(error)
    return None
