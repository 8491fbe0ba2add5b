"""The code lists a deployment uses, read from a folder of `code,term` CSV files.

The folder holds `index.csv` (one row per list: name, code system, source, version, licence,
the disjoint group it belongs to, a note), one `<name>.csv` per list, and optionally
`weights.csv` (list, code, weight: how often the synthetic county draws a code; 1 when not
named). Every code is checked as it loads; a bad list is refused with the file, the line and
the reason. Lists in the same disjoint group must share no code.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from codelists.checks import problem

CODELISTS_ENV = "CARERISK_CODELISTS"
INDEX = "index.csv"
WEIGHTS = "weights.csv"
INDEX_COLUMNS = ("name", "system", "source", "version", "licence", "disjoint", "note")
SYSTEMS = ("snomed", "icd10", "bnf", "treatment_function")


class CodeListError(ValueError):
    """A code list that cannot be used: the message names the file, the line and the reason."""


@dataclass(frozen=True)
class ListInfo:
    """One row of the index, and the list's codes and terms in file order."""

    name: str
    system: str
    source: str
    version: str
    licence: str
    disjoint: str
    note: str
    codes: tuple[str, ...]
    terms: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class CodeLists:
    """Every list by name, their generator weights and the digest of the folder's content."""

    folder: Path
    lists: Mapping[str, ListInfo]
    weights: Mapping[tuple[str, str], float] = field(default_factory=dict)
    digest: str = ""

    @classmethod
    def load(cls, folder: Path | None = None) -> CodeLists:
        """Read and check the lists in `folder` (default: the packaged lists)."""
        return load_folder(Path(folder) if folder else packaged_folder())

    def info(self, name: str) -> ListInfo:
        try:
            return self.lists[name]
        except KeyError:
            raise KeyError(f"no code list named {name!r} in {self.folder / INDEX}") from None

    def codes(self, name: str) -> tuple[str, ...]:
        """The list's codes in file order."""
        return self.info(name).codes

    def snomed(self, name: str) -> frozenset[str]:
        """The SNOMED CT concepts of a list (exact matches)."""
        return frozenset(self._of(name, "snomed"))

    def icd10_prefixes(self, name: str) -> tuple[str, ...]:
        """The ICD-10 prefixes of a list: a code matches when it starts with one."""
        return self._of(name, "icd10")

    def bnf(self, name: str) -> tuple[str, ...]:
        """The BNF prefixes (chapter, section, paragraph or chemical) of a list."""
        return self._of(name, "bnf")

    def term(self, code: str) -> str | None:
        """The first term any list gives the code, or None."""
        return self._terms().get(code)

    def knows(self, code: str) -> bool:
        """True when a list holds `code`: as written, or (ICD-10 and BNF lists, which hold
        prefixes) as a code that starts with one of a list's prefixes."""
        if code in self._terms() or any(code in i.codes for i in self.lists.values()):
            return True
        prefixes = tuple(
            c for i in self.lists.values() if i.system in ("icd10", "bnf") for c in i.codes
        )
        return code.startswith(prefixes)

    def weight(self, name: str, code: str) -> float:
        """How often the synthetic county draws `code` from list `name`, relative to 1."""
        return float(self.weights.get((name, code), 1.0))

    def names(self, system: str | None = None) -> tuple[str, ...]:
        return tuple(n for n, i in self.lists.items() if system is None or i.system == system)

    def _of(self, name: str, system: str) -> tuple[str, ...]:
        item = self.info(name)
        if item.system != system:
            raise KeyError(f"code list {name!r} is {item.system}, not {system}")
        return item.codes

    def _terms(self) -> dict[str, str]:
        cached = self.__dict__.get("_term_map")
        if cached is None:
            cached = {}
            for item in self.lists.values():
                for code, term in zip(item.codes, item.terms, strict=True):
                    if term:
                        cached.setdefault(code, term)
            object.__setattr__(self, "_term_map", cached)
        return cached


def packaged_folder() -> Path:
    """The lists shipped with carerisk."""
    return Path(str(resources.files("codelists") / "lists"))


def folder_from_env(env: Mapping[str, str] | None = None) -> Path | None:
    """The site folder named by CARERISK_CODELISTS, or None for the packaged lists."""
    env = os.environ if env is None else env
    value = env.get(CODELISTS_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def load_folder(folder: Path) -> CodeLists:
    """Read the index and every list it names, check them, and digest the content."""
    index_path = folder / INDEX
    if not index_path.is_file():
        raise CodeListError(f"{index_path}: no index of code lists")
    digest = hashlib.sha256()
    rows = _read(index_path, INDEX_COLUMNS, digest)
    lists: dict[str, ListInfo] = {}
    for line, row in rows:
        item = _load_list(folder, index_path, line, row, digest)
        if item.name in lists:
            raise CodeListError(f"{index_path}, line {line}: list {item.name!r} named twice")
        lists[item.name] = item
    _check_disjoint(folder, lists)
    weights = _load_weights(folder, lists, digest)
    return CodeLists(folder=folder, lists=lists, weights=weights, digest=digest.hexdigest())


def _read(
    path: Path, columns: tuple[str, ...], digest: hashlib._Hash
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with their line numbers (the header is line 1)."""
    text = path.read_text(encoding="utf-8-sig")
    digest.update(path.name.encode() + b"\0" + text.replace("\r\n", "\n").encode() + b"\0")
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise CodeListError(f"{path}, line 1: missing column(s) {', '.join(missing)}")
    out = []
    for number, row in enumerate(reader, start=2):
        out.append((number, {k: (v or "").strip() for k, v in row.items() if k}))
    return out


def _load_list(
    folder: Path, index_path: Path, line: int, row: dict[str, str], digest: hashlib._Hash
) -> ListInfo:
    name, system = row["name"], row["system"]
    if not name:
        raise CodeListError(f"{index_path}, line {line}: a list with no name")
    if system not in SYSTEMS:
        raise CodeListError(
            f"{index_path}, line {line}: list {name!r} has code system {system!r}; "
            f"expected one of {', '.join(SYSTEMS)}"
        )
    path = folder / f"{name}.csv"
    if not path.is_file():
        raise CodeListError(f"{index_path}, line {line}: list {name!r} has no file {path.name}")
    codes: list[str] = []
    terms: list[str] = []
    seen: set[str] = set()
    for number, entry in _read(path, ("code", "term"), digest):
        code = entry["code"]
        reason = problem(system, code) if code else "no code"
        if reason is None and code in seen:
            reason = "code listed twice"
        if reason:
            raise CodeListError(f"{path}, line {number}: {code!r} {reason}")
        seen.add(code)
        codes.append(code)
        terms.append(entry["term"])
    keep = {k: row.get(k, "") for k in ("source", "version", "licence", "disjoint", "note")}
    return ListInfo(name=name, system=system, codes=tuple(codes), terms=tuple(terms), **keep)


def _check_disjoint(folder: Path, lists: Mapping[str, ListInfo]) -> None:
    """Lists sharing a disjoint group must share no code."""
    owner: dict[tuple[str, str], str] = {}
    for item in lists.values():
        if not item.disjoint:
            continue
        for number, code in enumerate(item.codes, start=2):
            other = owner.setdefault((item.disjoint, code), item.name)
            if other != item.name:
                raise CodeListError(
                    f"{folder / (item.name + '.csv')}, line {number}: {code!r} is also in "
                    f"{other!r}, and lists of the group {item.disjoint!r} must be disjoint"
                )


def _load_weights(
    folder: Path, lists: Mapping[str, ListInfo], digest: hashlib._Hash
) -> dict[tuple[str, str], float]:
    path = folder / WEIGHTS
    if not path.is_file():
        return {}
    out: dict[tuple[str, str], float] = {}
    for number, row in _read(path, ("list", "code", "weight"), digest):
        where = f"{path}, line {number}"
        if row["list"] not in lists:
            raise CodeListError(f"{where}: no list named {row['list']!r}")
        if row["code"] not in lists[row["list"]].codes:
            raise CodeListError(f"{where}: {row['code']!r} is not in {row['list']!r}")
        try:
            weight = float(row["weight"])
        except ValueError:
            raise CodeListError(f"{where}: weight {row['weight']!r} is not a number") from None
        if not weight > 0:
            raise CodeListError(f"{where}: weight {row['weight']!r} must be above 0")
        out[(row["list"], row["code"])] = weight
    return out
