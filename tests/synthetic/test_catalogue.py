"""The county's catalogue from the code lists: the specialties drawn evenly, with repeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from codelists import CodeListError, CodeLists
from synthetic.catalogue import build_catalogue
from tests.codelists.site import site_folder


def test_a_specialty_is_repeated_as_often_as_its_weight(tmp_path: Path) -> None:
    lists = CodeLists.load()
    k = build_catalogue(lists)
    emergency = lists.codes("synthetic_emergency_specialties")
    assert k.emergency_specialties.count("300") == int(
        lists.weight("synthetic_emergency_specialties", "300")
    )
    assert set(k.emergency_specialties) == set(emergency)
    assert k.elective_specialties == lists.codes("synthetic_elective_specialties")
    assert set(k.specialty.values) == {*emergency, *k.elective_specialties, *k.fall_specialties}


def test_a_specialty_weight_that_is_not_whole_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    with (folder / "weights.csv").open("a") as f:
        f.write("synthetic_fall_specialties,110,2.5\n")
    with pytest.raises(CodeListError, match=r"weights.csv: synthetic_fall_specialties '110'"):
        build_catalogue(CodeLists.load(folder))


def test_the_county_writes_mental_health_stays_the_feature_counts() -> None:
    lists = CodeLists.load()
    k = build_catalogue(lists)
    mental = set(lists.codes("mental_health_specialties"))
    assert set(k.specialty.values) & mental  # the feature's list, exercised by the county
