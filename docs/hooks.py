"""mkdocs hooks: pages whose content is written from the code at build time.

A page holds a marker such as `<!-- generated:contract -->`; the build puts the text the code
gives in its place, so the contract, the command line and the API reference cannot go stale.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)


def _contract() -> str:
    from features.contract import contract_markdown

    return contract_markdown()


def _cli() -> str:
    from carerisk.cli import app
    from carerisk.reference import cli_markdown

    return cli_markdown(app)


def _openapi() -> str:
    from carerisk.reference import api_document, openapi_markdown

    with tempfile.TemporaryDirectory() as home:
        return openapi_markdown(api_document(Path(home)))


GENERATED: dict[str, Callable[[], str]] = {
    "contract": _contract,
    "cli": _cli,
    "openapi": _openapi,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    """The page with each generated marker replaced by its text."""
    for name, make in GENERATED.items():
        marker = f"<!-- generated:{name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
