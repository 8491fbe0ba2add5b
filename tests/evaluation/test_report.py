from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from evaluation.inputs import Check, FairnessLimits
from evaluation.report import (
    SECTIONS,
    EvaluationResult,
    evaluate,
    render_html,
    report_stem,
    write_report,
)

from .conftest import make_input

LIMITS = FairnessLimits(n_boot=60, min_group_size=100)


@pytest.fixture(scope="module")
def result() -> EvaluationResult:
    gate = [Check("beats champion", True, "AUROC up 0.04")]
    return evaluate(make_input(3000), LIMITS, gate=gate)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.imgs: list[dict[str, str | None]] = []
        self.stack: list[str] = []
        self.scripts = 0
        self.void = {"meta", "img", "br", "hr", "link", "input"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts += 1
        if tag not in self.void:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack[-3:]}"
        self.stack.pop()


def test_result_numbers(result: EvaluationResult) -> None:
    d = result.discrimination
    assert set(d) == {"model", "baseline", "champion", "true risk"}
    assert d["true risk"]["auroc"].value > d["baseline"]["auroc"].value
    assert result.truth is not None and result.truth["auroc_gap"] < 0.05
    assert result.calibration["true risk"]["slope"] == pytest.approx(1.0, abs=0.2)
    assert result.capacity_year is not None and result.capacity_year["people_visited"] == 240
    assert result.competing_risk is not None and result.competing_risk["died_before_event"] > 0
    assert result.checks[0].name == "beats champion"
    assert result.passed


def test_direction_disagreement_is_found(result: EvaluationResult) -> None:
    assert result.explanations is not None
    table = result.explanations.table.set_index("name")
    assert table.loc["bmi", "agrees"] is False or not table.loc["bmi", "agrees"]
    assert table.loc["falls_12m", "agrees"]
    assert table.index[0] == "falls_12m"
    assert table.loc["falls_12m", "label"] == "Falls in the last 12 months"


def test_json_round_trip(result: EvaluationResult, tmp_path: Path) -> None:
    html_path, json_path = write_report(result, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["meta"]["n"] == 3000
    assert data["discrimination"]["model"]["auroc"]["value"] == pytest.approx(
        result.discrimination["model"]["auroc"].value
    )
    assert len(data["fairness"]["table"]) == len(result.fairness.table)
    assert "figures" not in data
    assert html_path.exists() and html_path.suffix == ".html"


@pytest.mark.parametrize(
    ("version", "stem"),
    [
        ("3", "carerisk-falls-v3"),
        (3, "carerisk-falls-v3"),
        ("run e38f5405", "carerisk-falls-run-e38f5405"),  # trained, not registered yet
        ("run e38f5405/../x", "carerisk-falls-run-e38f5405-..-x"),
    ],
)
def test_report_file_names(version: object, stem: str) -> None:
    assert report_stem("carerisk-falls", version) == stem


def test_report_files_are_named_by_model_and_version(
    result: EvaluationResult, tmp_path: Path
) -> None:
    html_path, json_path = write_report(result, tmp_path)
    stem = f"{result.meta['model_name']}-v{result.meta['model_version']}"
    assert (html_path.name, json_path.name) == (f"{stem}.html", f"{stem}.json")
    assert " " not in stem


def test_html_sections_self_contained_and_parses(result: EvaluationResult) -> None:
    html = render_html(result)
    parser = _Collector()
    parser.feed(html)
    parser.close()
    assert parser.stack == []
    for section_id, title in SECTIONS:
        assert section_id in parser.ids
        assert title in html
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html, flags=re.I)
    assert refs and not [r for r in refs if re.match(r"\s*(https?:|//)", r, flags=re.I)]
    assert "http" not in " ".join(refs).lower()
    assert "@import" not in html and "url(" not in html
    assert parser.scripts == 0
    assert len(parser.imgs) >= 10
    assert all(
        img.get("alt") and str(img["src"]).startswith("data:image/png") for img in parser.imgs
    )
    assert "prioritises calibration within groups" in html
    assert "withhold" in html and "TRIPOD+AI" in html


def test_bad_input_names_the_field_and_row() -> None:
    inp = make_input(500)
    p = inp.p_model.copy()
    p[17] = 1.3
    inp.p_model = p
    with pytest.raises(ValueError, match=r"p_model row 17: value 1.3"):
        evaluate(inp, LIMITS)
    bad_y = make_input(500)
    bad_y.y = np.where(np.arange(500) == 4, 2, bad_y.y)
    with pytest.raises(ValueError, match=r"EvaluationInput.y row 4: value 2.0 is not 0 or 1"):
        evaluate(bad_y, LIMITS)
    unknown = make_input(500)
    unknown.groups = unknown.groups.assign(postcode="WR1")
    with pytest.raises(ValueError, match="groups column 'postcode'"):
        evaluate(unknown, LIMITS)


def test_real_data_has_no_truth_section_numbers() -> None:
    inp = make_input(1500, p_true=None, shap_values=None, feature_values=None, p_champion=None)
    res = evaluate(inp, LIMITS)
    assert res.truth is None and res.explanations is None
    html = render_html(res)
    assert "Not applicable: these are real records" in html
    assert "No SHAP values were supplied" in html


@pytest.mark.slow  # a full evaluation with the default bootstrap
def test_records_reference_is_the_criterion_and_the_truth_is_shown_beside_it() -> None:
    base = make_input(3000)
    assert base.p_true is not None
    # a reference between the model and the truth: the truth less a never-recorded part
    reference = np.clip(base.p_true * np.exp(np.random.default_rng(5).normal(0, 0.3, 3000)), 0, 1)
    res = evaluate(make_input(3000, p_reference=reference), FairnessLimits())
    assert res.truth is not None and res.truth["reference"] is not None
    ref = res.truth["reference"]
    assert ref["auroc"] == pytest.approx(res.discrimination["records reference"]["auroc"].value)
    assert ref["auroc_gap"] == pytest.approx(res.truth["auroc_model"] - ref["auroc"])
    page = render_html(res)
    assert "Records reference (criterion)" in page
    assert "Judged against the records reference" in page
    without = render_html(evaluate(make_input(3000), FairnessLimits()))
    assert "Records reference (criterion)" not in without
    assert "this extract has no records reference" in without


@pytest.mark.slow  # a full evaluation with the default bootstrap
def test_the_report_and_model_card_list_what_the_source_lacks() -> None:
    from features.coverage import Coverage

    record = {
        **Coverage({"social_care": "OMOP CDM holds no adult social care"}).summary(),
        "not_supplied": {"person": ["district"]},
        "missing_features": ["home_care_now", "telecare_now"],
        "partial_features": ["falls_365d"],
        "missing_descriptors": ["district"],
    }
    res = evaluate(make_input(1500, coverage=record), LIMITS)
    assert "district" not in set(res.fairness.table["descriptor"])
    html = render_html(res)
    card = html[html.index('id="model-card"') :]
    assert "What the source lacks" in card
    assert "social_care is absent from the source: OMOP CDM holds no adult social care." in card
    assert "person is mapped without district (not supplied)." in card
    assert "home_care_now, telecare_now" in card and "falls_365d" in card
    fairness = html[html.index('id="fairness"') : html.index('id="model-card"')]
    assert "Not tabled: district (left out: the source does not supply person.district)" in (
        fairness
    )
    plain = render_html(evaluate(make_input(1500), LIMITS))
    assert "What the source lacks" not in plain and "Not tabled" not in plain
