"""The referral store on a fresh home, for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.home import Home
from referrals.store import ReferralStore


@pytest.fixture
def store(tmp_path: Path) -> ReferralStore:
    return ReferralStore(Home(tmp_path).referrals_path)
