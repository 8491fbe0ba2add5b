"""Counties shared by the synthetic tests: generated once per test run (the first xdist worker
to ask builds each; every worker reads the same files, which no test writes into)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from synthetic import CountyConfig, GenerationSummary, generate
from tests.once import built_once, run_folder


def shared_county(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str, config: CountyConfig
) -> tuple[Path, GenerationSummary]:
    """The county `config` describes, with the summary its generation returned."""
    out = run_folder(tmp_path_factory, worker_id, f"synthetic-{name}")
    summary_path = out.with_name(out.name + ".summary.json")

    def build(folder: Path) -> None:
        summary = generate(config, folder)
        summary_path.write_text(json.dumps(dataclasses.asdict(summary)))

    built_once(out, build)
    return out, GenerationSummary(**json.loads(summary_path.read_text()))


@pytest.fixture(scope="session")
def county(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> tuple[Path, GenerationSummary]:
    """The default county: 20,000 people, clean."""
    return shared_county(tmp_path_factory, worker_id, "county", CountyConfig())


@pytest.fixture(scope="session")
def messy(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> tuple[Path, GenerationSummary]:
    config = CountyConfig(people=1_500, seed=5, mess_rate=0.01)
    return shared_county(tmp_path_factory, worker_id, "messy", config)
