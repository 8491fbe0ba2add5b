"""Files a session fixture builds once per test run, whichever xdist worker asks first."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.live import _locked


def run_folder(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str) -> Path:
    """A folder path that every worker of this test run shares (one run, one folder)."""
    base = tmp_path_factory.getbasetemp()
    return (base if worker_id == "master" else base.parent) / name


def built_once(folder: Path, build: Callable[[Path], None]) -> Path:
    """`folder` as `build` wrote it. The first process to take the folder's lock builds it and
    then writes a mark beside it; the others wait for the lock and find the mark. An unfinished
    folder (no mark) is built again. Callers must only read the folder."""
    mark = folder.with_name(folder.name + ".built")
    with _locked(folder.with_name(folder.name + ".lock")):
        if not mark.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
            build(folder)
            mark.touch()
    return folder
