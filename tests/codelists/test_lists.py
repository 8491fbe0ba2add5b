"""Loading and checking the code lists: the packaged ones, and broken site folders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from codelists import CodeListError, CodeLists, folder_from_env, packaged_folder
from codelists.lists import CODELISTS_ENV, INDEX
from tests.codelists.site import append_row, replace_codes, site_folder


@pytest.fixture(scope="module")
def packaged() -> CodeLists:
    return CodeLists.load()


def test_every_indexed_list_loads_with_its_source(packaged: CodeLists) -> None:
    with (packaged_folder() / INDEX).open() as f:
        names = [row["name"] for row in csv.DictReader(f)]
    assert list(packaged.lists) == names
    for item in packaged.lists.values():
        assert item.size > 0, item.name
        assert item.source and item.version and item.licence, item.name


def test_every_csv_in_the_folder_is_indexed() -> None:
    files = {p.stem for p in packaged_folder().glob("*.csv")} - {"index", "weights"}
    assert files == set(CodeLists.load().lists)


def test_published_lists_replace_the_single_concepts(packaged: CodeLists) -> None:
    dementia = packaged.snomed("condition_dementia")
    assert "26929004" in dementia  # Alzheimer's disease, missed by the old single concept
    assert "52448006" in dementia
    assert "44054006" in packaged.snomed("condition_diabetes")  # type 2 diabetes
    assert "59621000" in packaged.snomed("efi_hypertension")  # essential hypertension
    assert "NHS" in packaged.info("condition_dementia").licence or "Open Government" in (
        packaged.info("condition_dementia").licence
    )


def test_accessors_check_the_code_system(packaged: CodeLists) -> None:
    assert packaged.icd10_prefixes("fracture_hip_icd10") == ("S720", "S721", "S722")
    assert "0403" in packaged.bnf("frid_antidepressants")
    with pytest.raises(KeyError, match="is icd10, not snomed"):
        packaged.snomed("fall_icd10")
    with pytest.raises(KeyError, match="no code list named 'nothing'"):
        packaged.codes("nothing")


def test_terms_come_from_the_lists(packaged: CodeLists) -> None:
    assert packaged.term("26929004") is not None
    assert "alzheimer" in (packaged.term("26929004") or "").lower()
    assert packaged.term("123") is None


def test_the_hes_filler_is_accepted_and_kept_as_written(packaged: CodeLists) -> None:
    assert "W19X" in packaged.icd10_prefixes("synthetic_fall_causes_icd10")


def test_the_digest_follows_the_content(tmp_path: Path, packaged: CodeLists) -> None:
    folder = site_folder(tmp_path)
    assert CodeLists.load(folder).digest == packaged.digest
    append_row(folder, "condition_parkinsons", "32798002", "Parkinsonism")
    assert CodeLists.load(folder).digest != packaged.digest


def test_the_site_folder_comes_from_the_environment(tmp_path: Path) -> None:
    assert folder_from_env({}) is None
    assert folder_from_env({CODELISTS_ENV: str(tmp_path)}) == tmp_path.resolve()


def test_a_bad_check_digit_is_refused_with_file_and_line(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    line = append_row(folder, "condition_dementia", "52448007")
    with pytest.raises(CodeListError) as err:
        CodeLists.load(folder)
    text = str(err.value)
    assert "condition_dementia.csv" in text and f"line {line}" in text
    assert "check digit" in text


def test_an_unknown_icd10_code_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    line = append_row(folder, "fracture_pelvis_icd10", "S326")
    with pytest.raises(
        CodeListError,
        match=rf"fracture_pelvis_icd10.csv, line {line}: 'S326' not a WHO ICD-10 code",
    ):
        CodeLists.load(folder)


def test_a_filler_on_a_code_with_subcategories_is_checked_as_its_category(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    append_row(folder, "fall_icd10", "W19X")
    append_row(folder, "fall_icd10", "Q99X")  # Q99 exists: the filler is stripped
    CodeLists.load(folder)
    append_row(folder, "fall_icd10", "U99X")
    with pytest.raises(CodeListError, match="'U99X' not a WHO ICD-10 code"):
        CodeLists.load(folder)


def test_a_bad_bnf_shape_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    line = append_row(folder, "frid_opioids", "4.7.2")
    with pytest.raises(
        CodeListError, match=rf"frid_opioids.csv, line {line}: '4.7.2' not the shape"
    ):
        CodeLists.load(folder)


def test_a_code_in_two_disjoint_lists_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    never = CodeLists.load(folder).codes("smoking_never")[0]
    append_row(folder, "smoking_current", never)
    with pytest.raises(CodeListError) as err:
        CodeLists.load(folder)
    text = str(err.value)  # the later list in the index, at the code's line there
    assert "smoking_never.csv, line 2:" in text and "must be disjoint" in text
    assert f"{never!r} is also in 'smoking_current'" in text


def test_a_code_listed_twice_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    replace_codes(folder, "bmi", [("60621009", "BMI"), ("60621009", "BMI again")])
    with pytest.raises(CodeListError, match=r"bmi.csv, line 3: '60621009' code listed twice"):
        CodeLists.load(folder)


def test_an_index_naming_a_missing_file_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    (folder / "bmi.csv").unlink()
    with pytest.raises(CodeListError, match=r"index.csv, line \d+: list 'bmi' has no file bmi.csv"):
        CodeLists.load(folder)


def test_a_weight_for_a_code_not_in_its_list_is_refused(tmp_path: Path) -> None:
    folder = site_folder(tmp_path)
    with (folder / "weights.csv").open("a") as f:
        f.write("bmi,52448006,3\n")
    with pytest.raises(CodeListError, match=r"weights.csv, line \d+: '52448006' is not in 'bmi'"):
        CodeLists.load(folder)
