"""The home folder's layout: where each piece of state lives. Two homes never share a file.

The one place these names are spelled: the `carerisk` command's settings, the service's
configuration, keys, audit, benchmarks and tests all ask a `Home` for their paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    def extract_dir(self) -> Path:
        """Where `carerisk demo` writes its synthetic extract."""
        return self.root / "extract"
