"""Convert PySynthea's per-patient Bundles to the Bulk Data fixture the FHIR tests read.

The fixture in tests/importers/fhir/synthea40/ was made with (tietai-synthea 1.5.0):

    synthea -p 40 -s 7 -a 60-100 -r 20250101 -o /tmp/synthea40
    .venv/bin/python tests/importers/fhir/make_fixture.py /tmp/synthea40/fhir \
        tests/importers/fhir/synthea40

It writes one gzipped NDJSON file per resource type (Bundle entries in file order, compact
JSON, gzip with no timestamp so the bytes repeat) and a Bulk Data manifest.json. Billing and
provenance resources (Claim, ExplanationOfBenefit, DocumentReference, Provenance) are left
out. Run it by hand; the tests never regenerate the fixture.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

LEFT_OUT = frozenset({"Claim", "ExplanationOfBenefit", "DocumentReference", "Provenance"})
TRANSACTION_TIME = "2025-01-01T00:00:00Z"  # synthea's -r reference date


def convert(bundles: Path, out: Path) -> dict[str, int]:
    """Write out/<Type>.ndjson.gz and out/manifest.json; resources written per type."""
    by_type: dict[str, list[str]] = {}
    for path in sorted(bundles.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            kind = resource["resourceType"]
            if kind not in LEFT_OUT:
                by_type.setdefault(kind, []).append(json.dumps(resource, separators=(",", ":")))
    out.mkdir(parents=True, exist_ok=True)
    output = []
    for kind in sorted(by_type):
        name = f"{kind}.ndjson.gz"
        data = ("\n".join(by_type[kind]) + "\n").encode()
        with (
            (out / name).open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        ):
            gz.write(data)
        output.append({"type": kind, "url": name, "count": len(by_type[kind])})
    manifest = {
        "transactionTime": TRANSACTION_TIME,
        "request": "synthea -p 40 -s 7 -a 60-100 -r 20250101 (converted from Bundles)",
        "requiresAccessToken": False,
        "output": output,
        "error": [],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {kind: len(rows) for kind, rows in by_type.items()}


if __name__ == "__main__":
    counts = convert(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(counts, indent=2))
