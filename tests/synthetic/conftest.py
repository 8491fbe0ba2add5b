"""Counties shared by the synthetic tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthetic import CountyConfig, GenerationSummary, generate


@pytest.fixture(scope="session")
def county(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    """The default county: 20,000 people, clean."""
    out = tmp_path_factory.mktemp("county")
    return out, generate(CountyConfig(), out)


@pytest.fixture(scope="session")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("messy")
    return out, generate(CountyConfig(people=1_500, seed=5, mess_rate=0.01), out)
