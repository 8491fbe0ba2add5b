"""The developer's loop: the Makefile selects the quick tests by the markers tests/quick.py
names, and a quick test asking for a heavy fixture is caught."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.quick import HEAVY_FIXTURES, LONG_MARKERS, heavy_requests, quick_selection

REPO = Path(__file__).resolve().parents[1]


def test_make_check_selects_the_quick_tests() -> None:
    found = re.search(r"^FAST_TESTS := (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert found is not None, "the Makefile has no FAST_TESTS"
    assert found.group(1).strip() == quick_selection()
    assert '-m "$(FAST_TESTS)"' in (REPO / "Makefile").read_text()


def test_the_long_markers_are_declared() -> None:
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    declared = {line.split(":")[0] for line in pytest_options["ini_options"]["markers"]}
    assert set(LONG_MARKERS) <= declared


def test_a_quick_test_may_not_request_a_heavy_fixture() -> None:
    for name in HEAVY_FIXTURES:
        assert heavy_requests(["tmp_path", name], ["parametrize"]) == [name]
    assert heavy_requests(["tmp_path", "county"], []) == []


def test_a_marked_test_may() -> None:
    for marker in LONG_MARKERS:
        assert heavy_requests(list(HEAVY_FIXTURES), ["parametrize", marker]) == []
