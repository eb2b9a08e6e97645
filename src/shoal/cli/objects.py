"""``shoal apply``, ``get``, ``describe``, ``delete`` and ``wait``: kubectl's everyday commands,
for users without kubectl, against shoal's API server or any Kubernetes API server.

They read the kubeconfig as kubectl does (``--kubeconfig``, ``$KUBECONFIG``, ``$SHOAL_HOME`` or
``~/.shoal/kubeconfig``, ``~/.kube/config``), resolve KIND through discovery (plural, singular,
short name, ``kind.group``), and print what kubectl prints where the two overlap: the server's
``Table`` for ``get``, ``kind.group/name created|configured|unchanged`` for ``apply``, ``Error
from server (Reason): message`` for refusals.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from shoal.client.http import (
    APIError,
    APIResource,
    APIRetryableError,
    ConflictError,
    HTTPClient,
    NotFoundError,
    PropagationPolicy,
    UnknownResource,
    status_causes,
)
from shoal.client.kubeconfig import KubeConfigError, load_kubeconfig
from shoal.client.protocol import ResourceRef, WatchExpired
from shoal.errors import InvalidObjectsError, Issue
from shoal.model import load_text
from shoal.model.registry import UnknownKind, kind_for
from shoal.model.yamlio import parse_documents

__all__ = [
    "CommandError",
    "apply_command",
    "apply_manifests",
    "delete_command",
    "describe_command",
    "get_command",
    "load_manifests",
    "wait_command",
]

FILES_HELP = (
    "A YAML/JSON file, a directory (searched recursively) or - for standard input. Repeatable."
)
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class CommandError(Exception):
    """Print the message (as is) and exit 1."""


# -- shared options and plumbing ------------------------------------------------------------------


def _connection_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option(
        "-n", "--namespace", default=None, help="The namespace (default: the context's)."
    )(function)
    function = click.option("--context", default=None, help="The kubeconfig context to use.")(
        function
    )
    return click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The kubeconfig (default: $KUBECONFIG, $SHOAL_HOME/kubeconfig or "
        "~/.shoal/kubeconfig, ~/.kube/config).",
    )(function)


def _run(
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    body: Callable[[HTTPClient], Awaitable[int]],
) -> None:
    """Run ``body`` with a client; print errors as kubectl does and exit with its code."""

    async def main() -> int:
        config = load_kubeconfig(kubeconfig, context=context, namespace=namespace)
        client = HTTPClient(
            config,
            on_warning=lambda text: click.echo(f"Warning: {text}", err=True),
        )
        async with client:
            return await body(client)

    try:
        code = asyncio.run(main())
    except KubeConfigError as error:
        click.echo(f"error: {error}", err=True)
        code = 1
    except (APIError, NotFoundError, ConflictError) as error:
        click.echo(_server_error(error), err=True)
        code = 1
    except APIRetryableError as error:
        if error.status.code:
            click.echo(_server_error(error), err=True)
        else:
            click.echo(f"error: cannot reach the server: {error}", err=True)
        code = 1
    except UnknownResource as error:
        click.echo(f"error: {error}", err=True)
        code = 1
    except CommandError as error:
        click.echo(str(error), err=True)
        code = 1
    sys.exit(code)


def _server_error(error: APIError | NotFoundError | ConflictError | APIRetryableError) -> str:
    status = error.status
    reason = status.reason or f"HTTP {status.code}"
    return f"Error from server ({reason}): {status.message}"


def _namespace(
    client: HTTPClient, resource: APIResource, all_namespaces: bool = False
) -> str | None:
    if not resource.namespaced or all_namespaces:
        return None
    return client.namespace


def parse_duration(text: str) -> float:
    """A Go duration (``30s``, ``1m30s``, ``500ms``, ``2h``) or plain seconds, in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise click.BadParameter(f"{text!r} is not a duration (for example 30s, 1m30s, 2h)")
    return sum(float(amount) * units[unit] for amount, unit in parts)


def _age(timestamp: str | None, now: dt.datetime | None = None) -> str:
    """How long ago, as kubectl prints ages (``45s``, ``3m12s``, ``5h``, ``12d``)."""
    if not timestamp:
        return "<unknown>"
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as kubectl aligns them: each column as wide as its widest cell, 3 spaces apart."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i] + 3) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + row[-1])
    return "\n".join(lines) + "\n"


def _object_name(resource: APIResource, name: str) -> str:
    return f"{resource.qualified_kind}/{name}"


# -- apply ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Manifest:
    source: str
    body: dict[str, Any]


def _read_sources(paths: Sequence[str]) -> tuple[list[tuple[str, str]], list[Issue]]:
    sources: list[tuple[str, str]] = []
    issues: list[Issue] = []

    def read(path: str) -> None:
        if path == "-":
            sources.append(("<stdin>", sys.stdin.read()))
            return
        file = Path(path)
        if file.is_dir():
            found = sorted(
                p for p in file.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file()
            )
            if not found:
                issues.append(Issue(f"{path}: no {', '.join(MANIFEST_SUFFIXES)} files here"))
            for child in found:
                read(str(child))
            return
        try:
            sources.append((path, file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            issues.append(Issue(f"{path}: no such file or directory"))
        except (OSError, UnicodeDecodeError) as error:
            issues.append(Issue(f"{path}: cannot read: {error}"))

    for path in paths:
        read(path)
    return sources, issues


def _documents(text: str, source: str) -> list[dict[str, Any]]:
    documents, _ = parse_documents(text, source)
    bodies: list[dict[str, Any]] = []
    for document in documents:
        data = document.data
        if isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1":
            bodies.extend(item for item in data.get("items") or [] if isinstance(item, dict))
        elif isinstance(data, dict):
            bodies.append(data)
    return bodies


async def _load_manifests(client: HTTPClient, paths: Sequence[str]) -> list[_Manifest]:
    """Every object in ``paths``, validated by shoal's loader (problems as FILE:LINE:COL); kinds
    the loader does not know are accepted when the server serves them (or a CRD among the
    manifests defines them), and left to the server to validate."""
    sources, issues = _read_sources(paths)
    manifests: list[_Manifest] = []
    for source, text in sources:
        try:
            load_text(text, source)
        except InvalidObjectsError as error:
            issues.extend(error.issues)
        manifests.extend(_Manifest(source, body) for body in _documents(text, source))
    defined = {
        (f"{crd['spec'].get('group')}/{version.get('name')}", crd["spec"]["names"].get("kind"))
        for crd in (m.body for m in manifests)
        if crd.get("kind") == "CustomResourceDefinition"
        and isinstance(crd.get("spec"), dict)
        and isinstance(crd["spec"].get("names"), dict)
        for version in crd["spec"].get("versions") or []
        if isinstance(version, dict)
    }
    served: set[str] = set()
    for manifest in manifests:
        api_version, kind = manifest.body.get("apiVersion"), manifest.body.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            continue
        try:
            kind_for(api_version, kind)
        except UnknownKind as unknown:
            if (api_version, kind) in defined:
                served.add(str(unknown))
                continue
            try:
                await client.resource_for(api_version, kind)
            except UnknownResource:
                continue
            served.add(str(unknown))
    remaining = [issue for issue in issues if issue.message not in served]
    if remaining:
        lines = [str(issue) for issue in remaining]
        count = len(remaining)
        lines.append(f"error: {count} problem{'s' if count != 1 else ''} found; nothing applied")
        raise CommandError("\n".join(lines))
    return manifests


async def apply_manifests(
    client: HTTPClient,
    manifests: Sequence[_Manifest],
    *,
    field_manager: str = "shoal",
    force: bool = False,
    output: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Apply each manifest (loaded by :func:`load_manifests`) as ``shoal apply`` does, printing
    one line per object (or its name with ``output="name"``; nothing with yaml/json). Returns the
    objects as the server stored them and how many failed."""
    failed, noted = 0, False
    applied: list[dict[str, Any]] = []
    for manifest in manifests:
        obj = dict(manifest.body)
        name = str((obj.get("metadata") or {}).get("name") or "")
        try:
            resource = await client.resource_for(str(obj.get("apiVersion")), str(obj.get("kind")))
            if resource.namespaced and not (obj.get("metadata") or {}).get("namespace"):
                obj["metadata"] = {**(obj.get("metadata") or {}), "namespace": client.namespace}
            result = await client.apply(obj, field_manager=field_manager, force=force)
        except (APIError, NotFoundError, ConflictError, APIRetryableError) as error:
            failed += 1
            detail = "; ".join(status_causes(error.status.causes)) if error.status.causes else ""
            click.echo(
                f'{_server_error(error)}: error when applying "{manifest.source}"'
                + (f" ({detail})" if detail and detail not in error.status.message else ""),
                err=True,
            )
            continue
        except UnknownResource as error:
            failed += 1
            click.echo(
                f'error: resource mapping not found for name: "{name}" from '
                f'"{manifest.source}": {error}',
                err=True,
            )
            continue
        if result.note and not noted:
            click.echo(f"note: {result.note}", err=True)
            noted = True
        applied.append(result.object)
        if output == "name":
            click.echo(_object_name(resource, name))
        elif output not in ("yaml", "json"):
            click.echo(f"{_object_name(resource, name)} {result.outcome}")
    return applied, failed


load_manifests = _load_manifests


@click.command("apply")
@click.option("-f", "--filename", "paths", multiple=True, required=True, help=FILES_HELP)
@click.option(
    "--field-manager", default="shoal", show_default=True, help="The server-side apply manager."
)
@click.option(
    "--force-conflicts",
    is_flag=True,
    help="Take over fields other managers own (server-side apply only).",
)
@click.option("-o", "--output", type=click.Choice(["name", "yaml", "json"]), default=None)
@_connection_options
def apply_command(
    paths: tuple[str, ...],
    field_manager: str,
    force_conflicts: bool,
    output: str | None,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Create or update the objects in files, directories or standard input.

    Every object is validated first (problems are printed as FILE:LINE:COLUMN and nothing is
    applied); then each is applied with server-side apply (field manager `shoal`), or with
    create-or-update when the server does not support it. Prints `kind/name created`,
    `configured` or `unchanged` for each, as kubectl does.
    """

    async def body(client: HTTPClient) -> int:
        manifests = await _load_manifests(client, paths)
        applied, failed = await apply_manifests(
            client, manifests, field_manager=field_manager, force=force_conflicts, output=output
        )
        if output in ("yaml", "json") and applied:
            click.echo(
                _format_objects(applied, output or "yaml", single=len(applied) == 1), nl=False
            )
        return 1 if failed else 0

    _run(kubeconfig, context, namespace, body)


# -- get ------------------------------------------------------------------------------------------


def _format_objects(objects: list[dict[str, Any]], output: str, *, single: bool) -> str:
    document: Any = (
        objects[0]
        if single
        else {
            "apiVersion": "v1",
            "kind": "List",
            "items": objects,
            "metadata": {"resourceVersion": ""},
        }
    )
    if output == "json":
        return json.dumps(document, indent=4) + "\n"
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _table_rows(
    table: Mapping[str, Any], *, wide: bool, with_namespace: bool, headers: bool
) -> list[list[str]]:
    definitions = table.get("columnDefinitions") or []
    shown = [i for i, c in enumerate(definitions) if wide or int(c.get("priority") or 0) == 0]
    rows: list[list[str]] = []
    if headers:
        names = [str(definitions[i].get("name", "")).upper() for i in shown]
        rows.append((["NAMESPACE"] if with_namespace else []) + names)
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        # kubectl prints an absent (null) cell as nothing.
        values = [_cell(cells[i]) if i < len(cells) and cells[i] is not None else "" for i in shown]
        if with_namespace:
            metadata = (row.get("object") or {}).get("metadata") or {}
            values.insert(0, str(metadata.get("namespace", "")))
        rows.append(values)
    return rows


def _as_table(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A server that answered plain JSON (no Table support): NAME and AGE, as kubectl falls back."""
    if answer.get("kind") == "Table":
        return dict(answer)
    items = answer.get("items") if "items" in answer else [answer]
    return {
        "columnDefinitions": [
            {"name": "Name", "type": "string", "priority": 0},
            {"name": "Age", "type": "date", "priority": 0},
        ],
        "rows": [
            {
                "cells": [
                    (item.get("metadata") or {}).get("name"),
                    _age((item.get("metadata") or {}).get("creationTimestamp")),
                ],
                "object": item,
            }
            for item in items or []
        ],
    }


@click.command("get")
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json", "wide", "name"]),
    default=None,
    help="yaml, json, wide (extra columns) or name (kind/name).",
)
@click.option("-l", "--selector", default=None, help="A label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", default=None, help="A field selector, e.g. metadata.name=x.")
@click.option("--no-headers", is_flag=True, help="Omit the column headers.")
@_connection_options
def get_command(
    kind: str,
    names: tuple[str, ...],
    all_namespaces: bool,
    output: str | None,
    selector: str | None,
    field_selector: str | None,
    no_headers: bool,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Print objects of KIND (or the ones NAMEd) as a table, YAML, JSON or names.

    KIND is a plural, singular or short name, or kind.group (`deployments.apps`); KIND/NAME works
    too. The table is the server's, as `kubectl get` prints it.
    """
    if "/" in kind and not names:
        kind, _, single = kind.partition("/")
        names = (single,)

    async def body(client: HTTPClient) -> int:
        resource = await client.find_resource(kind)
        where = _namespace(client, resource, all_namespaces)
        ref = ResourceRef(resource.api_version, resource.kind, where)
        if output in ("yaml", "json", "name"):
            if names:
                objects = [await client.get(ref, name) for name in names]
            else:
                objects = (
                    await client.list(ref, label_selector=selector, field_selector=field_selector)
                ).items
            if output == "name":
                for obj in objects:
                    click.echo(_object_name(resource, obj["metadata"]["name"]))
            else:
                single = len(names) == 1
                click.echo(_format_objects(objects, output, single=single), nl=False)
            if not objects and not names:
                _no_resources(where, resource, all_namespaces)
            return 0
        with_namespace = all_namespaces and resource.namespaced
        rows: list[list[str]] = []
        if names:
            for index, name in enumerate(names):
                table = _as_table(await client.table(resource, namespace=where, name=name))
                rows.extend(
                    _table_rows(
                        table,
                        wide=output == "wide",
                        with_namespace=with_namespace,
                        headers=index == 0 and not no_headers,
                    )
                )
        else:
            table = _as_table(
                await client.table(
                    resource,
                    namespace=where,
                    label_selector=selector,
                    field_selector=field_selector,
                )
            )
            if not table.get("rows"):
                _no_resources(where, resource, all_namespaces)
                return 0
            rows = _table_rows(
                table, wide=output == "wide", with_namespace=with_namespace, headers=not no_headers
            )
        click.echo(_columns(rows), nl=False)
        return 0

    _run(kubeconfig, context, namespace, body)


def _no_resources(where: str | None, resource: APIResource, all_namespaces: bool) -> None:
    if resource.namespaced and not all_namespaces and where:
        click.echo(f"No resources found in {where} namespace.", err=True)
    else:
        click.echo("No resources found", err=True)


# -- describe -------------------------------------------------------------------------------------

_ACRONYMS = {"api": "API", "uid": "UID", "ip": "IP", "ips": "IPs", "url": "URL", "id": "ID"}


def _label(key: str) -> str:
    """``requestPerSecond`` -> ``Request Per Second``, as kubectl's describe titles fields."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|[A-Z]+|\d+", key) or [key]
    return " ".join(_ACRONYMS.get(w.lower(), w[:1].upper() + w[1:]) for w in words)


def _describe_value(lines: list[str], key: str, value: Any, indent: int) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        lines.append(f"{pad}{_label(key)}:")
        for child in sorted(value):
            _describe_value(lines, child, value[child], indent + 2)
    elif isinstance(value, list):
        lines.append(f"{pad}{_label(key)}:")
        for item in value:
            if isinstance(item, dict):
                for child in sorted(item):
                    _describe_value(lines, child, item[child], indent + 2)
            else:
                lines.append(f"{pad}  {_cell(item)}")
    else:
        lines.append(f"{pad}{_label(key)}:\t{_cell(value)}")


def _tabwriter(lines: Iterable[str], padding: int = 2) -> str:
    """Align ``key:\\tvalue`` lines as Go's tabwriter does: each run of consecutive lines with a
    tab gets its first cell padded to the widest in the run."""
    out: list[str] = []
    block: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(first) for first, _ in block), default=0) + padding
        out.extend(f"{first.ljust(width)}{rest}" for first, rest in block)
        block.clear()

    for line in lines:
        if "\t" in line:
            first, rest = line.split("\t", 1)
            block.append((first, rest))
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out) + "\n"


def _mapping_lines(pairs: Mapping[str, str] | None, label: str) -> list[str]:
    if not pairs:
        return [f"{label}:\t<none>"]
    items = sorted(pairs.items())
    first = [f"{label}:\t{items[0][0]}={items[0][1]}"]
    return first + [f"\t{k}={v}" for k, v in items[1:]]


async def _events_for(client: HTTPClient, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") or client.namespace
    ref = ResourceRef("v1", "Event", namespace)
    selector = ",".join(
        [
            f"involvedObject.name={metadata.get('name')}",
            f"involvedObject.namespace={namespace}",
            f"involvedObject.kind={obj.get('kind')}",
            f"involvedObject.uid={metadata.get('uid')}",
        ]
    )
    try:
        events = (await client.list(ref, field_selector=selector)).items
    except APIError as error:
        if error.status.code != 400:
            raise
        # A server without field selectors on events: filter here.
        events = [
            event
            for event in (await client.list(ref)).items
            if (event.get("involvedObject") or {}).get("name") == metadata.get("name")
            and (event.get("involvedObject") or {}).get("kind") == obj.get("kind")
            and (event.get("involvedObject") or {}).get("uid") in (None, "", metadata.get("uid"))
        ]
    return sorted(events, key=_event_time)


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _events_lines(events: list[dict[str, Any]]) -> str:
    if not events:
        return "Events:  <none>\n"
    rows = [
        ["Type", "Reason", "Age", "From", "Message"],
        ["----", "------", "----", "----", "-------"],
    ]
    for event in events:
        source = event.get("source") or {}
        rows.append(
            [
                str(event.get("type", "")),
                str(event.get("reason", "")),
                _age(_event_time(event) or None),
                str(source.get("component") or event.get("reportingComponent") or ""),
                str(event.get("message", "")).strip(),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    body = [
        "  " + "".join(cell.ljust(widths[i] + 2) for i, cell in enumerate(row[:-1])) + row[-1]
        for row in rows
    ]
    return "Events:\n" + "\n".join(body) + "\n"


def describe_object(obj: Mapping[str, Any]) -> list[str]:
    """The fields of ``obj`` in kubectl's generic describe layout (tab-separated)."""
    metadata = dict(obj.get("metadata") or {})
    lines = [f"Name:\t{metadata.get('name', '')}"]
    if metadata.get("namespace"):
        lines.append(f"Namespace:\t{metadata['namespace']}")
    lines += _mapping_lines(metadata.get("labels"), "Labels")
    lines += _mapping_lines(metadata.get("annotations"), "Annotations")
    lines.append(f"API Version:\t{obj.get('apiVersion', '')}")
    lines.append(f"Kind:\t{obj.get('kind', '')}")
    rest = {
        key: value
        for key, value in metadata.items()
        if key not in ("name", "namespace", "labels", "annotations", "managedFields")
    }
    if rest:
        _describe_value(lines, "metadata", rest, 0)
    for key in sorted(obj):
        if key not in ("apiVersion", "kind", "metadata"):
            _describe_value(lines, key, obj[key], 0)
    return lines


@click.command("describe")
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("-l", "--selector", default=None, help="Describe the objects with these labels.")
@_connection_options
def describe_command(
    kind: str,
    names: tuple[str, ...],
    selector: str | None,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Show the fields of objects and their Events, in kubectl's generic layout.

    KIND NAME, KIND/NAME, or KIND alone (every object of the kind; -l narrows it).
    """
    if "/" in kind and not names:
        kind, _, single = kind.partition("/")
        names = (single,)

    async def body(client: HTTPClient) -> int:
        resource = await client.find_resource(kind)
        ref = ResourceRef(resource.api_version, resource.kind, _namespace(client, resource))
        if names:
            objects = [await client.get(ref, name) for name in names]
        else:
            objects = (await client.list(ref, label_selector=selector)).items
        for index, obj in enumerate(objects):
            if index:
                click.echo()
            click.echo(_tabwriter(describe_object(obj)), nl=False)
            click.echo(_events_lines(await _events_for(client, obj)), nl=False)
        if not objects:
            _no_resources(ref.namespace, resource, False)
        return 0

    _run(kubeconfig, context, namespace, body)


# -- delete and wait ------------------------------------------------------------------------------


def _deleted_message(resource: APIResource, name: str, namespace: str | None) -> str:
    where = f" from {namespace} namespace" if resource.namespaced and namespace else ""
    return f'{resource.qualified_kind} "{name}" deleted{where}'


async def _wait_deleted(client: HTTPClient, ref: ResourceRef, name: str, within: float) -> bool:
    """Whether the object is gone within ``within`` seconds (watching its name)."""

    async def gone() -> None:
        while True:
            try:
                current = await client.get(ref, name)
            except NotFoundError:
                return
            revision = str(current["metadata"].get("resourceVersion", ""))
            try:
                async for event in client.watch(
                    ref, revision, field_selector=f"metadata.name={name}"
                ):
                    if event.type == "DELETED":
                        return
            except WatchExpired:
                continue

    try:
        async with asyncio.timeout(within):
            await gone()
    except TimeoutError:
        return False
    return True


@click.command("delete")
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", "paths", multiple=True, help=FILES_HELP)
@click.option("-l", "--selector", default=None, help="Delete the objects with these labels.")
@click.option(
    "--cascade",
    type=click.Choice(["background", "foreground", "orphan"]),
    default="background",
    show_default=True,
    help="What happens to dependents (the propagation policy).",
)
@click.option("--ignore-not-found", is_flag=True, help="An object that is already gone is fine.")
@click.option(
    "--wait",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="Wait until the objects are gone (--wait=false returns at once).",
)
@click.option("--timeout", default="60s", show_default=True, help="How long --wait waits.")
@_connection_options
def delete_command(
    kind: str | None,
    names: tuple[str, ...],
    paths: tuple[str, ...],
    selector: str | None,
    cascade: str,
    ignore_not_found: bool,
    wait: bool,
    timeout: str,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Delete objects: KIND NAME..., KIND/NAME, KIND -l SELECTOR, or -f PATH."""
    seconds = parse_duration(timeout)
    if kind and "/" in kind and not names:
        kind, _, single = kind.partition("/")
        names = (single,)
    if not paths and not kind:
        raise click.UsageError("give KIND NAME, KIND/NAME, KIND -l SELECTOR or -f PATH")
    if kind and not names and not selector:
        raise click.UsageError(f"resource(s) were provided, but no name was specified for {kind}")
    policies: dict[str, PropagationPolicy] = {
        "background": "Background",
        "foreground": "Foreground",
        "orphan": "Orphan",
    }
    policy = policies[cascade]

    async def body(client: HTTPClient) -> int:
        targets: list[tuple[APIResource, str, str | None]] = []
        if paths:
            for manifest in _documents_of(paths):
                resource = await client.resource_for(
                    str(manifest.get("apiVersion")), str(manifest.get("kind"))
                )
                metadata = manifest.get("metadata") or {}
                where = metadata.get("namespace") or client.namespace
                targets.append(
                    (resource, str(metadata.get("name")), where if resource.namespaced else None)
                )
        if kind:
            resource = await client.find_resource(kind)
            where = _namespace(client, resource)
            chosen = list(names)
            if selector:
                ref = ResourceRef(resource.api_version, resource.kind, where)
                listed = await client.list(ref, label_selector=selector)
                chosen += [item["metadata"]["name"] for item in listed.items]
                if not chosen:
                    _no_resources(where, resource, False)
            targets += [(resource, name, where) for name in chosen]
        failed = 0
        deleted: list[tuple[ResourceRef, str]] = []
        for resource, name, where in targets:
            ref = ResourceRef(resource.api_version, resource.kind, where)
            try:
                await client.delete(ref, name, propagation_policy=policy)
            except NotFoundError as error:
                if not ignore_not_found:
                    click.echo(_server_error(error), err=True)
                    failed += 1
                continue
            click.echo(_deleted_message(resource, name, where))
            deleted.append((ref, name))
        if wait:
            for ref, name in deleted:
                if not await _wait_deleted(client, ref, name, seconds):
                    click.echo(
                        f"error: timed out waiting for {ref.kind.lower()} {name!r} to be deleted",
                        err=True,
                    )
                    failed += 1
        return 1 if failed else 0

    _run(kubeconfig, context, namespace, body)


def _documents_of(paths: Sequence[str]) -> list[dict[str, Any]]:
    sources, issues = _read_sources(paths)
    if issues:
        raise CommandError("\n".join(f"error: {issue}" for issue in issues))
    return [body for source, text in sources for body in _documents(text, source)]


def _condition_met(obj: Mapping[str, Any], condition: str, value: str) -> bool:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if (
            isinstance(entry, dict)
            and str(entry.get("type", "")).lower() == condition.lower()
            and str(entry.get("status", "")).lower() == value.lower()
        ):
            return True
    return False


@click.command("wait")
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--for",
    "for_",
    required=True,
    help="condition=COND[=VALUE] (VALUE defaults to True) or delete.",
)
@click.option("--timeout", default="30s", show_default=True, help="How long to wait (e.g. 1m).")
@_connection_options
def wait_command(
    targets: tuple[str, ...],
    for_: str,
    timeout: str,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Wait until objects (KIND/NAME..., or KIND NAME...) meet a condition or are deleted.

    Prints `kind.group/name condition met` for each, as kubectl does; exits 1 on timeout.
    """
    seconds = parse_duration(timeout)
    if for_ == "delete":
        condition, value = "", ""
    elif for_.startswith("condition="):
        condition, _, value = for_.removeprefix("condition=").partition("=")
        value = value or "True"
        if not condition:
            raise click.BadParameter("condition=COND needs a condition", param_hint="--for")
    else:
        raise click.BadParameter(
            f"{for_!r}: expected condition=COND[=VALUE] or delete", param_hint="--for"
        )
    pairs: list[tuple[str, str]] = []
    if all("/" in target for target in targets):
        pairs = [(t.partition("/")[0], t.partition("/")[2]) for t in targets]
    elif len(targets) >= 2 and not any("/" in t for t in targets):
        pairs = [(targets[0], name) for name in targets[1:]]
    else:
        raise click.UsageError("give KIND/NAME... or KIND NAME...")

    async def body(client: HTTPClient) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        for kind, name in pairs:
            resource = await client.find_resource(kind)
            ref = ResourceRef(resource.api_version, resource.kind, _namespace(client, resource))
            remaining = max(0.0, deadline - loop.time())
            if for_ == "delete":
                met = await _wait_deleted(client, ref, name, remaining)
            else:
                met = await _wait_condition(client, ref, name, condition, value, remaining)
            if not met:
                raise CommandError(
                    f"error: timed out waiting for the condition on {resource.name}/{name}"
                )
            click.echo(f"{_object_name(resource, name)} condition met")
        return 0

    _run(kubeconfig, context, namespace, body)


async def _wait_condition(
    client: HTTPClient, ref: ResourceRef, name: str, condition: str, value: str, within: float
) -> bool:
    current = await client.get(ref, name)  # NotFound is an error, as with kubectl

    async def met() -> None:
        nonlocal current
        while True:
            if _condition_met(current, condition, value):
                return
            revision = str(current["metadata"].get("resourceVersion", ""))
            try:
                async for event in client.watch(
                    ref, revision, field_selector=f"metadata.name={name}"
                ):
                    if event.type in ("ADDED", "MODIFIED"):
                        current = event.object
                        if _condition_met(current, condition, value):
                            return
                    elif event.type == "DELETED":
                        raise CommandError(f"error: {ref.kind.lower()} {name!r} was deleted")
            except WatchExpired:
                pass
            current = await client.get(ref, name)

    try:
        async with asyncio.timeout(within):
            await met()
    except TimeoutError:
        return False
    return True
