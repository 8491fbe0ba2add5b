"""Which tests the developer's loop (`make check`) runs, and what those tests may not request.

A test is quick when it carries none of the long markers. A quick test must not request a
fixture that costs minutes to build (a trained home, a served instance, a PostgreSQL cluster):
tests/conftest.py fails such a test before its fixtures are built.
"""

from __future__ import annotations

from collections.abc import Iterable

# The markers that keep a test out of `make check` (declared in pyproject.toml).
LONG_MARKERS = ("slow", "server", "spark", "browser")

# Fixtures that take minutes, or start a server: only a test with a long marker may ask for them.
HEAVY_FIXTURES = ("trained_home", "live_service", "postgres")


def quick_selection() -> str:
    """The `-m` expression that selects the quick tests (the Makefile's FAST_TESTS)."""
    return " and ".join(f"not {marker}" for marker in LONG_MARKERS)


def heavy_requests(fixture_names: Iterable[str], marker_names: Iterable[str]) -> list[str]:
    """The heavy fixtures a test requests while carrying no long marker (empty when it may)."""
    if set(marker_names) & set(LONG_MARKERS):
        return []
    requested = set(fixture_names)
    return [name for name in HEAVY_FIXTURES if name in requested]
