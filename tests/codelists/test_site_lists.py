"""A site's own folder of code lists changes the features, the labels and the served check."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from codelists import CodeLists
from features.codes import Codes, packaged_codes
from features.engines import compute_features, open_sources
from features.labels import LabelSettings, labels
from features.outcomes import PRODUCT
from tests.codelists.site import append_row, replace_codes, site_folder
from tests.features._records import gp, make_store, person, rx

D = date(2024, 4, 1)
START = date(2021, 4, 1)
PARKINSONISM = "32798002"  # in the eFI parkinsonism set, not in Parkinson's disease


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    records = [
        person("SITE01"),
        person("SITE02"),
        gp("SITE01", date(2023, 5, 1), PARKINSONISM),
        gp("SITE02", date(2024, 5, 1), "1912002"),  # a fall after D: the falls label
        rx("SITE02", date(2024, 3, 1), "0403030Q0", "sertraline"),
    ]
    return make_store(tmp_path / "store.duckdb", records)


def test_a_site_list_changes_the_features_to_match(tmp_path: Path, store: Path) -> None:
    folder = site_folder(tmp_path)
    append_row(folder, "condition_parkinsons", PARKINSONISM, "Parkinsonism (disorder)")
    replace_codes(folder, "frid_antidepressants", [("0401", "Hypnotics and anxiolytics")])
    site = Codes.from_lists(CodeLists.load(folder))
    ours = compute_features(store, D, data_start=START).set_index("person_id")
    theirs = compute_features(store, D, data_start=START, codes=site).set_index("person_id")
    assert ours.loc["SITE01", "has_parkinsons"] == 0
    assert theirs.loc["SITE01", "has_parkinsons"] == 1
    assert ours.loc["SITE02", "frid_antidepressants_90d"] == 1
    assert theirs.loc["SITE02", "frid_antidepressants_90d"] == 0
    unchanged = [c for c in ours.columns if c not in ("has_parkinsons", "frid_antidepressants_90d",
                                                      "frid_classes_90d")]  # fmt: skip
    assert ours[unchanged].equals(theirs[unchanged])
    assert site.digest != packaged_codes().digest


def test_a_site_list_changes_the_labels_to_match(tmp_path: Path, store: Path) -> None:
    folder = site_folder(tmp_path)
    replace_codes(folder, "fall_snomed", [("217082002", "Accidental fall (event)")])
    site = Codes.from_lists(CodeLists.load(folder))
    falls = PRODUCT.get("falls")
    with open_sources(store) as src:
        ours = labels(src, falls, D).to_pandas().set_index("person_id")
        theirs = labels(src, falls, D, LabelSettings(codes=site)).to_pandas()
    assert ours.loc["SITE02", "label"] == 1
    assert theirs.set_index("person_id").loc["SITE02", "label"] == 0
