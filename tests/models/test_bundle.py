from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import feature_list
from models import BundleError, EncodingError, ModelBundle, encode
from models.encoding import feature_from_dict, feature_to_dict
from tests.models.frames import make_frame, small_features
from training.fit import TrainedModels


def test_round_trip_gives_identical_predictions(trained: TrainedModels, tmp_path: Path) -> None:
    bundle = trained.bundle
    bundle.save(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "bundle.json",
        "calibrator.json",
        "features.json",
        "model.txt",
    ]
    loaded = ModelBundle.load(tmp_path / "b")
    frame = make_frame(people=200, seed=9)
    np.testing.assert_array_equal(loaded.predict(frame), bundle.predict(frame))
    assert loaded.features == bundle.features
    assert loaded.bands == bundle.bands
    assert loaded.model_text == bundle.model_text
    assert loaded.metadata["best_iteration"] == trained.best_iteration


def test_tampered_file_is_named(trained: TrainedModels, tmp_path: Path) -> None:
    folder = trained.bundle.save(tmp_path / "b")
    calibrator = json.loads((folder / "calibrator.json").read_text())
    calibrator["a"] = 99.0 if calibrator["kind"] == "sigmoid" else calibrator.get("a")
    calibrator["tampered"] = True
    (folder / "calibrator.json").write_text(json.dumps(calibrator))
    with pytest.raises(BundleError, match="calibrator.json does not match its checksum"):
        ModelBundle.load(folder)


def test_missing_file_and_missing_manifest(trained: TrainedModels, tmp_path: Path) -> None:
    folder = trained.bundle.save(tmp_path / "b")
    (folder / "model.txt").unlink()
    with pytest.raises(BundleError, match="missing model.txt"):
        ModelBundle.load(folder)
    with pytest.raises(BundleError, match="not a model bundle"):
        ModelBundle.load(tmp_path / "empty")


def test_shap_contributions_sum_to_raw_score(trained: TrainedModels) -> None:
    frame = make_frame(people=300, seed=11)
    contrib = trained.bundle.contributions(frame)
    assert contrib.shape == (len(frame), len(small_features()) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), trained.bundle.raw_score(frame), atol=1e-9)


def test_explain_gives_top_reasons_in_words(trained: TrainedModels) -> None:
    frame = make_frame(people=50, seed=12)
    reasons = trained.bundle.explain(frame, top_k=3)
    contrib = trained.bundle.contributions(frame)
    assert len(reasons) == len(frame)
    for row, person in enumerate(reasons):
        assert len(person) == 3
        sizes = [abs(r.contribution) for r in person]
        assert sizes == sorted(sizes, reverse=True)
        largest = np.abs(contrib[row, :-1]).max()
        assert sizes[0] == pytest.approx(largest)
        for reason in person:
            assert reason.direction == ("raises" if reason.contribution > 0 else "lowers")
            assert "{value}" not in reason.label
    falls = next(r for p in reasons for r in p if r.feature == "falls_12m")
    assert falls.label.endswith("falls in the last 12 months")
    assert falls.clinical and not falls.modifiable


def test_encoding_unknown_category_is_nan_and_booleans_are_numbers() -> None:
    features = small_features()
    frame = make_frame(people=3, seed=1).head(4).copy()
    frame["efi_band"] = ["mild", "not-a-band", None, "severe"]
    frame["lives_alone"] = [True, False, None, "true"]
    matrix = encode(frame, features)
    assert list(matrix.columns) == [f.name for f in features]
    assert matrix["efi_band"].tolist()[0] == 1.0
    assert np.isnan(matrix["efi_band"].iloc[1]) and np.isnan(matrix["efi_band"].iloc[2])
    assert matrix["efi_band"].iloc[3] == 3.0
    assert matrix["lives_alone"].iloc[[0, 1, 3]].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(matrix["lives_alone"].iloc[2])


def test_encoding_errors_name_feature_and_row() -> None:
    frame = make_frame(people=3, seed=1)
    frame["age"] = frame["age"].astype(object)
    frame.loc[4, "age"] = "old"
    with pytest.raises(EncodingError, match="feature age .* at row 4: 'old'"):
        encode(frame, small_features())
    with pytest.raises(EncodingError, match="lacks column"):
        encode(frame.drop(columns=["noise"]), small_features())


def test_unknown_category_still_scores(trained: TrainedModels) -> None:
    frame = make_frame(people=5, seed=2)
    frame["efi_band"] = "unheard-of"
    p = trained.bundle.predict(frame)
    assert np.all((p > 0) & (p < 1))


def test_constrained_feature_never_lowers_risk(trained: TrainedModels) -> None:
    """Directional test: more previous falls or more years never lower falls risk."""
    base = make_frame(people=200, seed=21)
    for feature, steps in (("falls_12m", [0, 1, 2, 3, 5, 8]), ("age", [65, 70, 80, 90, 99])):
        scores = []
        for value in steps:
            frame = base.copy()
            frame[feature] = float(value)
            scores.append(trained.bundle.predict(frame))
        diffs = np.diff(np.vstack(scores), axis=0)
        assert (diffs >= -1e-12).all(), feature
        assert (scores[-1] > scores[0]).mean() > 0.9


def test_unrelated_person_never_changes_a_score(trained: TrainedModels) -> None:
    frame = make_frame(people=20, seed=4)
    before = trained.bundle.predict(frame)
    changed = frame.copy()
    changed.loc[0, ["falls_12m", "age"]] = [7.0, 98.0]
    after = trained.bundle.predict(changed)
    np.testing.assert_array_equal(before[1:], after[1:])
    assert after[0] > before[0]


def test_bands_follow_cut_points(trained: TrainedModels) -> None:
    bands = trained.bundle.bands
    assert bands.band([0.0, 0.05, 0.099, 0.1, 0.5]) == [
        "low",
        "moderate",
        "moderate",
        "high",
        "very high",
    ]
    assert len(trained.bundle.band(pd.DataFrame(make_frame(people=5)))) == 10


def test_reasons_leave_out_unexplained_features_and_keep_to_the_audience(
    trained: TrainedModels,
) -> None:
    """explain=False features still score but are never a reason; `allowed` narrows the set."""
    from dataclasses import replace

    frame = make_frame(people=30, seed=13)
    hidden = "age"
    features = tuple(
        replace(f, explain=False) if f.name == hidden else f for f in trained.bundle.features
    )
    bundle = replace(trained.bundle, features=features)
    np.testing.assert_allclose(bundle.predict(frame), trained.bundle.predict(frame))
    for person in bundle.explain(frame, top_k=10):
        assert hidden not in {r.feature for r in person}
    only = {"medicines"}
    for person in trained.bundle.explain(frame, top_k=10, allowed=only):
        assert {r.feature for r in person} == only


def test_feature_words_round_trip_and_older_bundles_load() -> None:
    falls = feature_list.feature("falls_90d")
    assert feature_from_dict(feature_to_dict(falls)) == falls
    older = {k: v for k, v in feature_to_dict(falls).items() if k != "label_one"}
    assert feature_from_dict(older).describe(1) == "1 recorded falls in the last 3 months"


def test_the_code_lists_digest_survives_saving_and_a_different_one_is_refused(
    trained: TrainedModels, tmp_path: Path
) -> None:
    from models.bundle import CODELISTS_DIGEST, check_codelists_digest, with_codelists_digest

    with pytest.raises(BundleError, match="does not record the code lists"):
        check_codelists_digest(trained.bundle, "a" * 64)
    marked = with_codelists_digest(trained.bundle, "a" * 64)
    loaded = ModelBundle.load(marked.save(tmp_path / "bundle"))
    assert loaded.metadata[CODELISTS_DIGEST] == "a" * 64
    check_codelists_digest(loaded, "a" * 64)
    with pytest.raises(BundleError, match="trained on code lists aaaaaaaaaaaa, but the lists "
                       "loaded are bbbbbbbbbbbb"):  # fmt: skip
        check_codelists_digest(loaded, "b" * 64)
