"""A home and everything in it owner-only; a warning when something is not."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from features.home import Home
from serving.state import warn_if_open
from tests.live import carerisk


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_what_the_command_creates_is_owner_only(tmp_path: Path) -> None:
    """`carerisk` sets the umask itself, whatever the caller's (here 022)."""
    home = tmp_path / "home"
    old = os.umask(0o022)
    try:
        done = carerisk(home, "synth", "--people", "300", "--seed", "3", "--out",
                        str(Home(home).extract_dir), timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        done = carerisk(home, "load", str(Home(home).extract_dir), timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        added = carerisk(home, "keys", "add", "--org", "GP A", "--role", "gp", "--all-practices")
        assert added.returncode == 0
    finally:
        os.umask(old)
    assert Home(home).store_path.is_file() and any(Home(home).extract_dir.iterdir())
    assert Home(home).too_open() == []
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(Home(home).store_path.stat().st_mode) == 0o600


def test_a_home_open_to_others_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = Home(tmp_path / "home")
    home.reports_dir.mkdir(parents=True, mode=0o700)
    home.root.chmod(0o700)
    register = home.reports_dir / "register-falls-county.csv"
    register.write_text("rank,person_id\n")
    register.chmod(0o600)
    assert warn_if_open(home) == []
    register.chmod(0o644)
    home.reports_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="carerisk.serving"):
        assert warn_if_open(home) == [home.reports_dir, register]
    assert "2 path(s)" in caplog.text and "reports/register-falls-county.csv" in caplog.text
    assert "chmod -R go-rwx" in caplog.text
