"""What a store covers: the latest activity (deaths do not count), the data's start and the
extract last loaded, all read in features/extent.py."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from features.extent import data_start, last_extract, latest_event_date, snapshot_date
from features.home import Home
from features.store import load_extract
from tests.features._records import ae, death, gp, make_store, person


def test_deaths_do_not_move_the_latest_event_date(tmp_path: Path) -> None:
    store = make_store(
        Home(tmp_path).store_path,
        [
            person("PERSON"),
            ae("PERSON", date(2024, 3, 30)),
            person("LATEDY"),
            death("LATEDY", date(2024, 6, 30)),  # a death registered after the activity ends
            gp("LATEDY", date(2019, 1, 1), "60621009", 25.0),  # an old GP code
        ],
    )
    assert latest_event_date(store) == date(2024, 3, 30)
    assert snapshot_date(store) == date(2024, 3, 31)
    # without a load log: the earliest activity, GP codes and deaths left out
    assert last_extract(store) is None
    assert data_start(store) == date(2024, 3, 30)


def test_empty_store_has_no_dates(tmp_path: Path) -> None:
    store = make_store(Home(tmp_path).store_path, [person("PERSON")])
    assert latest_event_date(store) is None and snapshot_date(store) is None


def test_the_last_extract_gives_the_start_and_the_fallback_date(
    tmp_path: Path, make_extract
) -> None:
    folder = make_extract()
    manifest = folder / "manifest.json"
    text = json.loads(manifest.read_text()) if manifest.is_file() else {}
    manifest.write_text(json.dumps({**text, "start": "2021-07-01"}))
    store = Home(tmp_path).store_path
    report = load_extract(folder, store)
    extract = last_extract(store)
    assert extract is not None and extract.folder == folder
    assert extract.extract_date == report.extract_date
    assert data_start(store) == date(2021, 7, 1)
