"""Where a synthetic extract keeps its truth: read from the extract's own manifest.

The generator (synthetic/generate.py) writes the truth files under the extract and names them in
manifest.json; this is the one reader of that, for the entry points (the `carerisk` command,
the demo, benchmarks) that hand the true probabilities to training and evaluation, which never
import synthetic.
"""

from __future__ import annotations

import json
from pathlib import Path


def true_risk_path(extract_dir: Path) -> Path | None:
    """The extract's file of true probabilities (person_id, index_date, outcome,
    true_probability), or None when the extract is not a synthetic county's."""
    return _named(extract_dir, "true_risk")


def records_reference_path(extract_dir: Path) -> Path | None:
    """The extract's records reference (person_id, index_date, outcome,
    reference_probability): the truth with every latent no record reveals at its mean; None
    for extracts written before it existed, or not synthetic."""
    return _named(extract_dir, "records_reference")


def _named(extract_dir: Path, key: str) -> Path | None:
    manifest = Path(extract_dir) / "manifest.json"
    if not manifest.is_file():
        return None
    named = json.loads(manifest.read_text(encoding="utf-8")).get("truth", {}).get(key)
    path = Path(extract_dir) / named if named else None
    return path if path is not None and path.is_file() else None
