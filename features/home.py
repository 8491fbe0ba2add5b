"""The home folder's layout: where each piece of state lives. Two homes never share a file.

The one place these names are spelled: the `carerisk` command's settings, the service's
configuration, keys, audit, benchmarks and tests all ask a `Home` for their paths.

A home holds person-level data (the store, the extract, registers, the audit), so it and
everything in it are owner-only: the `carerisk` command sets the umask 077 before it creates
anything (carerisk/cli.py), and `too_open` lists what a home holds that others may read, for a
warning when the service starts.

A home can be copied, restored or moved: `location_path` records where it last was, and
training/home_check.py points the paths its records hold at the new place.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

OWNER_ONLY_UMASK = 0o077


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def store_path(self) -> Path:
        return self.root / "store.duckdb"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def default_tracking_uri(self) -> str:
        """The tracking store when no MLFLOW_TRACKING_URI is given: sqlite in the home."""
        return f"sqlite:///{self.mlflow_db}"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "mlflow-artifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def champions_pointer(self) -> Path:
        """Which copy in the BentoML store is each outcome's champion (serving/model_store.py)."""
        return self.bentoml_home / "champions.json"

    @property
    def serving_generation(self) -> Path:
        """Bumped by a reload asked of one worker, so the others follow (serving/watch.py)."""
        return self.root / "serving-generation"

    @property
    def location_path(self) -> Path:
        """Where the home last knew itself to be, to tell a moved home (training/home_check.py)."""
        return self.root / "home.json"

    @property
    def keys_path(self) -> Path:
        return self.root / "keys.json"

    @property
    def audit_path(self) -> Path:
        return self.root / "audit.sqlite"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def objections_path(self) -> Path:
        return self.root / "objections.csv"

    @property
    def referrals_path(self) -> Path:
        """The referral loop's store (SQLite, WAL): referrals, their history, CDS token ids."""
        return self.root / "referrals.sqlite"

    @property
    def cds_clients_path(self) -> Path:
        """CDS Hooks clients the admin registered: issuer, organisation, public keys."""
        return self.root / "cds_clients.json"

    @property
    def cds_patients_path(self) -> Path:
        """The deployment's lookup from a clinical system's Patient.id to the pseudonymised id."""
        return self.root / "cds_patients.csv"

    @property
    def scores_dir(self) -> Path:
        """The scores the service reads (features.scores_export): one read-only DuckDB file per
        outcome, champion and snapshot, written by `carerisk score-all`."""
        return self.root / "serving"

    @property
    def extract_dir(self) -> Path:
        """Where `carerisk demo` writes its synthetic extract."""
        return self.root / "extract"

    def too_open(self) -> list[Path]:
        """The home itself and anything in it that its group or others may read, write or
        enter (symbolic links are not followed)."""
        if not self.root.exists():
            return []
        found = [self.root] if _open_to_others(self.root) else []
        for folder, names, files in os.walk(self.root):
            for name in [*names, *files]:
                path = Path(folder) / name
                if _open_to_others(path):
                    found.append(path)
        return found


def _open_to_others(path: Path) -> bool:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:  # removed meanwhile
        return False
    return not stat.S_ISLNK(mode) and bool(mode & 0o077)
