"""The README is the front door: short, leading with the two commands, every link alive."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_readme_leads_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    head = text[: text.index("## Where to go next")]
    assert "make demo" in head and "make test" in head


def test_readme_says_what_goes_in() -> None:
    head = README.read_text(encoding="utf-8")[:2500]
    for form in ("OMOP", "FHIR", "CSV or Parquet"):
        assert form in head, form


def test_readme_links_lead_to_files() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    relative = [link for link in links if "://" not in link]
    assert relative
    assert [link for link in relative if not (REPO / link).exists()] == []


def test_contract_page_is_generated() -> None:
    page = (REPO / "docs" / "contract.md").read_text(encoding="utf-8")
    assert "<!-- generated:contract -->" in page
