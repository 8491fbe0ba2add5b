"""The deployment's lookup from a clinical system's Patient.id to carerisk's pseudonymised id.

A CDS Hooks call names the patient by the clinical system's own FHIR ``Patient.id``; carerisk
knows people only by pseudonymised ids. The deployment supplies the link as a CSV with columns
``patient_id,person_id`` at ``<home>/cds_patients.csv`` (features/home.py), kept next to the
other keys of the service and re-read when it changes. A missing file maps nobody; a bad row is
an error naming the file, line and column, never skipped. The demo maps everyone one to one
(`write_identity_lookup`).
"""

from __future__ import annotations

import csv
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from features.contract import PERSON_ID_PATTERN

FHIR_ID = r"[A-Za-z0-9\-\.]{1,64}"
COLUMNS = ("patient_id", "person_id")


class PatientLookupError(Exception):
    """The lookup file cannot be read or has a bad row (named)."""


@dataclass
class PatientLookup:
    """Patient.id -> pseudonymised person id, from the CSV (re-read when it changes)."""

    path: Path
    _ids: dict[str, str] = field(default_factory=dict, repr=False)
    _stamp: tuple[int, int, int] | None = field(default=None, repr=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def person_of(self, patient_id: str) -> str | None:
        with self._mutex:
            stamp = _stamp(self.path)
            if stamp != self._stamp:
                self._ids, self._stamp = read_lookup(self.path), stamp
            return self._ids.get(patient_id)


@lru_cache(maxsize=8)
def lookup_at(path: Path) -> PatientLookup:
    """One lookup per file in a process."""
    return PatientLookup(path)


def read_lookup(path: Path) -> dict[str, str]:
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        return {}
    ids: dict[str, str] = {}
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
            raise PatientLookupError(f"{path}: the header must have patient_id and person_id")
        for row in reader:
            patient = (row.get("patient_id") or "").strip()
            person = (row.get("person_id") or "").strip()
            where = f"{path}: line {reader.line_num}"
            if not re.fullmatch(FHIR_ID, patient):
                raise PatientLookupError(f"{where}: patient_id {patient!r} is not a FHIR id")
            if not re.fullmatch(PERSON_ID_PATTERN, person):
                raise PatientLookupError(f"{where}: person_id {person!r} is not pseudonymised")
            ids[patient] = person
    return ids


def write_identity_lookup(path: Path, person_ids: list[str]) -> int:
    """The demo's lookup: each person's pseudonymised id is also their Patient.id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([p, p] for p in person_ids)
    return len(person_ids)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
