"""bench/RESULTS.md as named sections: each bench script rewrites its own section and leaves the
others as they are, so every figure lives in one file, written by the script that measured it."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TITLE = "# carerisk benchmark results"
INTRO = (
    "Each section is written by the bench script it names, with its command, the machine and "
    "the date. The documentation links here and copies no figure."
)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section:{name} -->", f"<!-- /section:{name} -->"


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Put `markdown` in the file as the section `name`, replacing that section if it is there
    and keeping every other section as it was."""
    start, end = _markers(name)
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else f"{TITLE}\n\n{INTRO}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def read_section(name: str, path: Path = RESULTS) -> str | None:
    """The section's text without its markers, or None when the file has no such section."""
    if not path.exists():
        return None
    start, end = _markers(name)
    pattern = re.escape(start) + r"\n(.*?)\n" + re.escape(end)
    found = re.search(pattern, path.read_text(encoding="utf-8"), flags=re.S)
    return found.group(1) if found else None
