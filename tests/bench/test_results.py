"""bench/RESULTS.md sections: a script rewrites its own and leaves the others."""

from __future__ import annotations

from pathlib import Path

from bench.results import read_section, write_section


def test_a_section_is_replaced_and_the_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_section("one", "## One\n\nfirst figure", path)
    write_section("two", "## Two\n\nsecond figure", path)
    write_section("one", "## One\n\nnew figure", path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# carerisk benchmark results")
    assert read_section("one", path) == "## One\n\nnew figure"
    assert read_section("two", path) == "## Two\n\nsecond figure"
    assert "first figure" not in text
    assert text.index("## One") < text.index("## Two")


def test_a_missing_section_reads_as_none(tmp_path: Path) -> None:
    assert read_section("absent", tmp_path / "RESULTS.md") is None
    write_section("one", "x", tmp_path / "RESULTS.md")
    assert read_section("absent", tmp_path / "RESULTS.md") is None


def test_the_shipped_file_holds_the_suite_section() -> None:
    assert read_section("run_all") is not None
