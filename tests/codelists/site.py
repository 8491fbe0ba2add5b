"""A site folder of code lists for tests: a copy of the packaged lists with edits."""

from __future__ import annotations

import shutil
from pathlib import Path

from codelists import packaged_folder


def site_folder(tmp_path: Path) -> Path:
    """A writable copy of the packaged lists."""
    folder = tmp_path / "site-codelists"
    shutil.copytree(packaged_folder(), folder)
    return folder


def append_row(folder: Path, name: str, code: str, term: str = "added by the test") -> int:
    """Add a code to list `name`; returns the line it is on."""
    path = folder / f"{name}.csv"
    text = path.read_text()
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + f"{code},{term}\n")
    return len(path.read_text().splitlines())


def replace_codes(folder: Path, name: str, rows: list[tuple[str, str]]) -> None:
    """Make list `name` hold exactly `rows`."""
    lines = ["code,term", *(f"{code},{term}" for code, term in rows)]
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
