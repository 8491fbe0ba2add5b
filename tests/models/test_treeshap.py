"""The fast TreeSHAP (models/treeshap.py) against LightGBM's own pred_contrib, entry by entry.

Models are trained here on random data: several depths, NaN in training and in the explained
rows, a categorical feature with 150 levels (multi-word bitset splits), zero-as-missing,
missing values off, monotone constraints; the explained rows add the awkward values (exact
thresholds, +-inf, -0.0, values below LightGBM's zero threshold, negative, fractional, unseen
and huge categories).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.treeshap import (
    ROW_BLOCK,
    TreeExplainer,
    UnsupportedModel,
    lightgbm_threads,
    unsupported_reason,
)
from training.fit import TrainedModels

TOLERANCE = 1e-9
LEVELS = 150  # categories of column 1: bitsets of five 32-bit words
CATEGORICAL = [1]
WIDTH = 6
SPECIAL = [np.nan, 0.0, -0.0, 1e-36, -1e-36, 1e-300, np.inf, -np.inf, 1e300, -1e300]
SPECIAL_CATEGORIES = [-1.0, -0.5, 0.5, 1.999, LEVELS - 1.0, LEVELS + 7.0, 31.0, 32.0, 33.0,
                      3e9, -3e9, 1e20]  # fmt: skip


def random_data(seed: int, rows: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Six columns: normal, a 150-level category, a count with many zeros, a rounded value,
    a uniform, a binary flag; about 12% NaN in five of them; a label that depends on all."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(size=rows),
            rng.integers(0, LEVELS, rows).astype(float),
            rng.poisson(0.6, rows).astype(float),
            np.round(rng.normal(size=rows), 1),
            rng.uniform(-1, 1, rows),
            rng.integers(0, 2, rows).astype(float),
        ]
    )
    effect = rng.normal(size=LEVELS)
    filled = np.nan_to_num(x)
    logit = (
        filled[:, 0]
        + effect[filled[:, 1].astype(int)]
        + 0.8 * filled[:, 2]
        - filled[:, 3] * filled[:, 4]
        + 0.5 * filled[:, 5]
    )
    for column in (0, 1, 2, 3, 4):
        x[rng.random(rows) < 0.12, column] = np.nan
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def train(x: np.ndarray, y: np.ndarray, rounds: int = 12, **params: Any) -> lgb.Booster:
    base = {
        "objective": "binary",
        "verbosity": -1,
        "num_threads": 2,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_cat_threshold": 64,
        "seed": 7,
    }
    data = lgb.Dataset(x, y, categorical_feature=CATEGORICAL, free_raw_data=False)
    return lgb.train({**base, **params}, data, rounds)


def awkward_rows(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """Rows of x with one value replaced by each special value, each exact split threshold of
    that feature and each special category."""
    rows = [x[:40]]
    base = np.nan_to_num(x[:1], nan=0.5)
    for column in range(x.shape[1]):
        values = list(SPECIAL) + thresholds(booster, column)
        if column in CATEGORICAL:
            values += SPECIAL_CATEGORIES
        block = np.repeat(base, len(values), axis=0)
        block[:, column] = values
        rows.append(block)
    return np.concatenate(rows)


def thresholds(booster: lgb.Booster, feature: int) -> list[float]:
    found: list[float] = []

    def walk(node: dict[str, Any]) -> None:
        if "split_index" not in node:
            return
        if node["split_feature"] == feature and node["decision_type"] == "<=":
            found.append(float(node["threshold"]))
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return sorted(set(found))[:20]


def assert_same(booster: lgb.Booster, x: np.ndarray, **options: Any) -> TreeExplainer:
    explainer = TreeExplainer.from_booster(booster, **options)
    ours = explainer.contributions(x)
    reference = booster.predict(x, pred_contrib=True)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)
    return explainer


@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
@pytest.mark.parametrize("depth", [1, 2, 4, 6, 8, 12])
def test_equal_to_pred_contrib(depth: int, missing: str) -> None:
    x, y = random_data(seed=depth)
    params: dict[str, Any] = {"max_depth": depth, "num_leaves": min(2**depth, 48)}
    if missing == "zero":
        params["zero_as_missing"] = True
    if missing == "none":
        params["use_missing"] = False
    booster = train(x, y, **params)
    rows = awkward_rows(booster, x)
    explainer = assert_same(booster, rows)
    assert explainer.tabled_share == 1.0
    model = booster.model_to_string()
    if depth >= 4:  # the model has what the test is about
        assert any(int(n) > 0 for n in _values(model, "num_cat"))  # categorical splits
        numerical = [int(t) for t in _values(model, "decision_type") if not int(t) & 1]
        missing_types = {(t >> 2) & 3 for t in numerical}
        assert {"nan": 2, "zero": 1, "none": 0}[missing] in missing_types
        assert missing != "none" or missing_types == {0}


def _values(model: str, key: str) -> list[str]:
    """Every value of one field over the trees of a model text."""
    return [
        value
        for line in model.splitlines()
        if line.startswith(f"{key}=")
        for value in line.split("=", 1)[1].split()
    ]


def test_categorical_splits_use_wide_bitsets() -> None:
    x, y = random_data(seed=21, rows=3000)
    booster = train(x, y, rounds=20, max_depth=6, num_leaves=31, max_cat_to_onehot=2)
    bounds = [
        [int(v) for v in line.split("=", 1)[1].split()]
        for line in booster.model_to_string().splitlines()
        if line.startswith("cat_boundaries=")
    ]
    assert max(b - a for tree in bounds for a, b in zip(tree, tree[1:], strict=False)) >= 3
    assert_same(booster, awkward_rows(booster, x))  # categories past 64 in three+ words


@pytest.mark.parametrize("method", ["basic", "intermediate", "advanced"])
def test_monotone_constraints(method: str) -> None:
    x, y = random_data(seed=31)
    booster = train(
        x,
        y,
        max_depth=6,
        num_leaves=31,
        monotone_constraints=[1, 0, 1, -1, 0, 1],
        monotone_constraints_method=method,
    )
    assert_same(booster, awkward_rows(booster, x))


def test_leaves_without_a_table_are_exact() -> None:
    """Leaves past the table size limit or budget are computed per row, still exactly."""
    x, y = random_data(seed=41)
    booster = train(x, y, max_depth=12, num_leaves=63)
    rows = awkward_rows(booster, x)
    none = assert_same(booster, rows, table_max_features=0)
    assert none.tabled_share == 0.0
    some = assert_same(booster, rows, table_max_features=3)
    assert 0.0 < some.tabled_share < 1.0
    tight = assert_same(booster, rows, table_budget_bytes=4096)
    assert tight.tables_bytes <= 4096


def test_deep_paths_through_many_features() -> None:
    """Leaf paths with ten or more distinct features (wide masks, untabled leaves)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 40))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = np.nansum(x[:, :20] * rng.normal(size=20), axis=1) + rng.normal(size=1500) > 0
    params = {"objective": "binary", "verbosity": -1, "max_depth": -1, "num_leaves": 120,
              "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 0, "learning_rate": 0.3,
              "feature_fraction_bynode": 0.5}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(x, y.astype(int)), 4)
    explainer = assert_same(booster, x, table_max_features=6)
    assert int(np.max(explainer.forest.leaf_slots)) >= 10
    assert 0.0 < explainer.tabled_share < 1.0


def test_single_leaf_trees_and_best_iteration() -> None:
    x, y = random_data(seed=51)
    stump = train(x, y, rounds=3, min_data_in_leaf=10**6)
    assert "num_leaves=1" in stump.model_to_string()
    assert_same(stump, x[:50])
    valid = lgb.Dataset(*random_data(seed=52, rows=400), categorical_feature=CATEGORICAL)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "learning_rate": 0.5, "num_leaves": 31},
        lgb.Dataset(x, y, categorical_feature=CATEGORICAL),
        200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(2, verbose=False)],
        keep_training_booster=True,  # keeps the trees after the best iteration
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    assert_same(booster, x[:200])


def test_threads_and_input_types_agree() -> None:
    x, y = random_data(seed=61)
    booster = train(x, y, max_depth=6, num_leaves=31)
    explainer = TreeExplainer.from_booster(booster)
    rows = x[: ROW_BLOCK * 5 + 3]
    one = explainer.contributions(rows, threads=1)
    np.testing.assert_array_equal(explainer.contributions(rows, threads=2), one)
    np.testing.assert_array_equal(explainer.contributions(np.asfortranarray(rows)), one)
    single = rows.astype(np.float32)
    reference = booster.predict(single, pred_contrib=True)
    np.testing.assert_allclose(explainer.contributions(single), reference, rtol=0, atol=TOLERANCE)
    counts = np.nan_to_num(rows).astype(np.int64) * 12345679  # LightGBM reads ints as float32
    reference = booster.predict(counts, pred_contrib=True)
    np.testing.assert_allclose(explainer.contributions(counts), reference, rtol=0, atol=TOLERANCE)
    assert explainer.contributions(rows[:0]).shape == (0, WIDTH + 1)


def test_bad_input_is_named() -> None:
    x, y = random_data(seed=71)
    explainer = TreeExplainer.from_booster(train(x, y, rounds=2))
    with pytest.raises(ValueError, match="rows have 5 features; the model was trained on 6"):
        explainer.contributions(x[:, :5])
    with pytest.raises(ValueError, match="2-d array"):
        explainer.contributions(x[0])
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        explainer.contributions(x, threads=0)


def test_threads_follow_openmp_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert lightgbm_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert lightgbm_threads() >= 1


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"linear_tree": True}, "linear tree"),
        ({"objective": "multiclass", "num_class": 3}, "3 trees per iteration"),
        ({"boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}, "random-forest"),
    ],
)
def test_unsupported_models_are_refused_with_the_reason(
    params: dict[str, Any], reason: str
) -> None:
    x, y = random_data(seed=81, rows=600)
    if params.get("objective") == "multiclass":
        y = np.random.default_rng(0).integers(0, 3, len(y))
    booster = train(x, y, rounds=3, **params)
    assert reason in (unsupported_reason(booster) or "")
    with pytest.raises(UnsupportedModel, match=reason):
        TreeExplainer.from_booster(booster)


def test_bundle_uses_the_fast_explainer(trained: TrainedModels) -> None:
    from tests.models.frames import make_frame

    bundle = trained.bundle
    frame = make_frame(people=400, seed=13)
    x = bundle.matrix(frame).to_numpy()
    assert bundle.explainer is not None
    reference = bundle.booster.predict(x, pred_contrib=True)
    np.testing.assert_allclose(bundle.contributions(frame), reference, rtol=0, atol=TOLERANCE)


def test_bundle_falls_back_to_pred_contrib(
    trained: TrainedModels, caplog: pytest.LogCaptureFixture
) -> None:
    width = len(trained.bundle.features)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, width))
    forest = lgb.train(  # pred_contrib explains a random forest; models.treeshap does not
        {"objective": "binary", "boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1,
         "verbosity": -1},
        lgb.Dataset(x, (x[:, 0] > 0).astype(int)),
        3,
    )  # fmt: skip
    bundle = dataclasses.replace(trained.bundle, model_text=forest.model_to_string())
    with caplog.at_level(logging.INFO, logger="carerisk.models"):
        assert bundle.explainer is None
    assert "random-forest" in caplog.text
    np.testing.assert_array_equal(bundle._contributions(x), forest.predict(x, pred_contrib=True))


# --- properties -----------------------------------------------------------------------------

_MODELS: dict[tuple[int, str], tuple[lgb.Booster, TreeExplainer]] = {}


def _model(depth: int, missing: str) -> tuple[lgb.Booster, TreeExplainer]:
    key = (depth, missing)
    if key not in _MODELS:
        x, y = random_data(seed=100 + depth)
        params: dict[str, Any] = {"max_depth": depth, "num_leaves": 31}
        params.update({"zero": {"zero_as_missing": True}, "none": {"use_missing": False}}.get(
            missing, {}
        ))  # fmt: skip
        booster = train(x, y, **params)
        _MODELS[key] = (booster, TreeExplainer.from_booster(booster))
    return _MODELS[key]


values = st.one_of(
    st.sampled_from(SPECIAL + SPECIAL_CATEGORIES),
    st.floats(-3, 3),
    st.integers(-2, LEVELS + 40).map(float),
)
quick = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(
    rows=hnp.arrays(np.float64, st.tuples(st.integers(1, 70), st.just(WIDTH)), elements=values),
    depth=st.sampled_from([3, 9]),
    missing=st.sampled_from(["nan", "zero", "none"]),
)
def test_property_any_rows(rows: np.ndarray, depth: int, missing: str) -> None:
    booster, explainer = _model(depth, missing)
    reference = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(explainer.contributions(rows), reference, rtol=0, atol=TOLERANCE)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    depth=st.integers(1, 10),
    leaves=st.integers(2, 40),
    min_leaf=st.sampled_from([1, 3, 20]),
    zero_as_missing=st.booleans(),
)
def test_property_any_model(
    seed: int, depth: int, leaves: int, min_leaf: int, zero_as_missing: bool
) -> None:
    x, y = random_data(seed=seed, rows=400)
    booster = train(
        x,
        y,
        rounds=4,
        max_depth=depth,
        num_leaves=leaves,
        min_data_in_leaf=min_leaf,
        zero_as_missing=zero_as_missing,
    )
    assert_same(booster, awkward_rows(booster, x))
