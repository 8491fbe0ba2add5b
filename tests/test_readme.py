"""The README is the partners' copy of the data contract: it must say what the code checks."""

from __future__ import annotations

from pathlib import Path

from features.contract import contract_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_contract_section_is_the_contract() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = "<!-- contract:start -->", "<!-- contract:end -->"
    section = text[text.index(start) + len(start) : text.index(end)].strip()
    assert section == contract_markdown().strip()


def test_readme_leads_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8")[:1500]
    assert "make demo" in head and "make test" in head
