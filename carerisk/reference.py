"""Reference pages written from the code itself: every command of the `carerisk` app, and every
route of the scoring API's OpenAPI document, as Markdown for the documentation site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def cli_markdown(app: typer.Typer, name: str = "carerisk") -> str:
    """Every command of `app`, group by group: its usage, help and options."""
    root = typer.main.get_command(app)
    sections: list[str] = []
    for path, command in _walk(root, [name]):
        sections.append(_command_markdown(path, command))
    return "\n".join(sections)


def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """The command and every subcommand below it, depth first, in name order."""
    found = [(path, command)]
    subcommands = getattr(command, "commands", {})
    for sub_name in sorted(subcommands):
        sub = subcommands[sub_name]
        if not sub.hidden:
            found.extend(_walk(sub, [*path, sub_name]))
    return found


def _command_markdown(path: list[str], command: Any) -> str:
    title = " ".join(path)
    ctx = command.context_class(command, info_name=path[-1])
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    usage = " ".join([title, *(a.name.upper() for a in arguments), "[OPTIONS]"])
    if getattr(command, "commands", None):
        usage = f"{title} COMMAND [ARGS]..."
    lines = [f"### `{title}`", "", f"```text\n{usage}\n```", ""]
    if command.help:
        lines += [command.help.strip(), ""]
    rows = [_option_row(p, ctx) for p in command.params if not p.hidden]
    if rows:
        lines += ["| option | type | default | what it does |", "| --- | --- | --- | --- |"]
        lines += rows
        lines.append("")
    return "\n".join(lines)


def _option_row(param: Any, ctx: Any) -> str:
    """One table row: the option's spellings, its type, its default and its help."""
    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    flag = getattr(param, "is_flag", False)
    kind = "flag" if flag else param.display_type(ctx).strip("<>")
    shown = param.default not in (None, (), "", False) and not callable(param.default)
    default = str(param.default).replace("|", "\\|") if shown else ""
    return f"| {names} | {kind} | {default} | {_plain(param.help or '')} |"


def _plain(text: str) -> str:
    """A help text on one table-safe line."""
    return " ".join(text.split()).replace("|", "\\|")


def openapi_markdown(document: dict[str, Any]) -> str:
    """Every operation of an OpenAPI document (path, method, summary, description, request body,
    answers), then every schema with its properties."""
    lines: list[str] = []
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            lines += _operation_markdown(path, method, operation)
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name in sorted(schemas):
            lines += _schema_markdown(name, schemas[name])
    return "\n".join(lines)


def _operation_markdown(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if operation.get("summary"):
        lines += [f"**{_plain(operation['summary'])}**", ""]
    if operation.get("description"):
        lines += [operation["description"].strip(), ""]
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body:
        lines += [f"Body: {_schema_ref(body.get('schema', {}))}", ""]
    answers = operation.get("responses", {})
    if answers:
        lines += ["| status | answer |", "| --- | --- |"]
        for status, answer in answers.items():
            content: dict[str, Any] = answer.get("content", {})
            first: dict[str, Any] = next(iter(content.values()), {})
            schema = first.get("schema", {})
            shape = f" ({_schema_ref(schema)})" if schema else ""
            lines.append(f"| {status} | {_plain(answer.get('description', ''))}{shape} |")
        lines.append("")
    return lines


def _schema_markdown(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [_plain(schema["description"]), ""]
    properties = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", []))
        lines += ["| field | type | required | description |", "| --- | --- | --- | --- |"]
        for field, spec in properties.items():
            needed = "yes" if field in required else ""
            described = _plain(spec.get("description", ""))
            lines.append(f"| `{field}` | {_schema_ref(spec)} | {needed} | {described} |")
        lines.append("")
    return lines


def _schema_ref(schema: dict[str, Any]) -> str:
    """A schema in a few words: a referenced schema's name, an array of it, or its type."""
    if "$ref" in schema:
        return f"[{schema['$ref'].rsplit('/', 1)[-1]}](#{_anchor(schema['$ref'])})"
    if schema.get("type") == "array":
        return f"array of {_schema_ref(schema.get('items', {}))}"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return " or ".join(_schema_ref(s) for s in schema[key])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    return str(schema.get("type", "object"))


def _anchor(ref: str) -> str:
    return ref.rsplit("/", 1)[-1].lower()


def api_document(home: Path) -> dict[str, Any]:
    """The OpenAPI document of the service for every registered outcome, its paths under /v1,
    built from the same routers without starting a server (`home` is only named, never read)."""
    from fastapi import FastAPI

    from features.outcomes import outcome_set
    from serving.api import V1
    from serving.config import ServingConfig
    from serving.routes import v1_routers
    from serving.service import api as served

    config = ServingConfig(home=home, tracking_uri=f"sqlite:///{home}/mlflow.db")
    app = FastAPI(title=served.title, version=served.version, description=served.description)
    for routes in v1_routers(tuple(outcome_set(())), config):
        app.include_router(routes, prefix=V1)  # the service mounts the API at /v1
    return app.openapi()
