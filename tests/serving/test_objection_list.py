from __future__ import annotations

import pandas as pd
import pytest

from features.home import Home
from serving.objection_list import ObjectionList, ObjectionListError


def test_missing_file_means_nobody_objected(tmp_path):
    objections = ObjectionList.load(Home(tmp_path).objections_path)
    assert len(objections) == 0
    assert "P0001234" not in objections


def test_load_contains_and_reload(tmp_path):
    path = Home(tmp_path).objections_path
    path.write_text("person_id\nP0001234\nP0005678\n")
    objections = ObjectionList.load(path)
    assert "P0001234" in objections and "P0009999" not in objections
    path.write_text("person_id\nP0009999\n")
    assert objections.reload() == 1
    assert "P0009999" in objections and "P0001234" not in objections


def test_filter_frame_removes_objectors_and_counts_them(tmp_path):
    path = Home(tmp_path).objections_path
    path.write_text("person_id,note\nP0001234,opt-out\n")
    objections = ObjectionList.load(path)
    df = pd.DataFrame({"person_id": ["P0001234", "P0005678", "P0001234"], "x": [1, 2, 3]})
    kept, removed = objections.filter_frame(df)
    assert removed == 2
    assert kept["person_id"].tolist() == ["P0005678"]
    with pytest.raises(ObjectionListError, match="no column 'person_id'"):
        objections.filter_frame(pd.DataFrame({"id": ["P0001234"]}))


def test_bad_rows_are_errors_naming_file_column_and_line(tmp_path):
    path = Home(tmp_path).objections_path
    path.write_text("person_id\nP0001234\nnot an id!\n")
    with pytest.raises(ObjectionListError, match=r"objections.csv: column 'person_id', line 3"):
        ObjectionList.load(path)
    path.write_text("nhs_number\n1234567890\n")
    with pytest.raises(ObjectionListError, match="header must contain a 'person_id'"):
        ObjectionList.load(path)


def test_a_malformed_file_is_named_by_line_never_by_content(tmp_path):
    """the row may be an NHS number or a name; the error never repeats it."""
    path = Home(tmp_path).objections_path
    for content, line in [
        (b"person_id\nP0001234aaaa\n943 476 5919\n", 3),
        (b"person_id\nP0001234aaaa\nPok000000001\n\xff\xfeJane Smith\n", 4),
        (b"person_id\nP0001234aaaa\nJane Smith\x00\n", 3),
    ]:
        path.write_bytes(content)
        with pytest.raises(ObjectionListError, match=f"line {line}") as caught:
            ObjectionList.load(path)
        assert "943" not in str(caught.value) and "Jane" not in str(caught.value)


def test_a_byte_order_mark_is_allowed(tmp_path):
    path = Home(tmp_path).objections_path
    path.write_bytes(b"\xef\xbb\xbfperson_id\r\nP0001234aaaa\r\n")
    assert "P0001234aaaa" in ObjectionList.load(path)
