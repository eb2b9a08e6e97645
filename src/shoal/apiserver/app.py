"""The HTTP face of the API server: Kubernetes paths, verbs, query parameters and bodies.

One handler (:func:`make_handler`, served by aiohttp's low-level ``web.Server``) takes every
request: the error boundary, which turns every :class:`~shoal.apiserver.status.APIError` into a
Kubernetes ``Status`` and anything unexpected into a 500 ``InternalError`` with a generic message
(logged with its traceback; the request itself is not logged, so neither is the token); bearer
token authentication (``/healthz``, ``/livez``, ``/readyz`` and ``/version`` are open); then
:func:`_dispatch`, which parses the path (:mod:`~shoal.apiserver.paths`) against the registry as
it is *now* (CRDs come and go at run time) and calls
:class:`~shoal.apiserver.service.ObjectService`. An ``Application`` with a router and middlewares
would add nothing here (one catch-all route) and cost ~20 µs per request (measured with wrk on
a hello-world handler: 97 vs 72 and 68 vs 51 µs); :func:`make_app` still builds one around the
same handler for code that wants an ``Application``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import yaml
from aiohttp import HttpVersion11, web

from shoal.apiserver import aggregated, openapi, patching, protobuf, scaling
from shoal.apiserver.paths import Discovery, ObjectPath, parse_path
from shoal.apiserver.records import item_text, loads
from shoal.apiserver.resources import Resource
from shoal.apiserver.security import tokens_equal
from shoal.apiserver.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from shoal.apiserver.service import (
    DeleteOptions,
    ObjectService,
    Propagation,
    WriteOptions,
    WriteResult,
)
from shoal.apiserver.status import APIError, Cause
from shoal.apiserver.tables import table_for, table_spec_for
from shoal.apiserver.validating import parse_field_validation
from shoal.apiserver.watchstream import DEFAULT_TIMEOUT, WatchRequest, check_watch_list, serve_watch

__all__ = ["SERVICE", "ServerInfo", "make_app", "make_handler", "request_factory"]

logger = logging.getLogger(__name__)

Body = dict[str, Any]

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
MAX_BODY = 3 * 1024 * 1024  # Kubernetes' limit for a request body
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``/version`` says, and the token clients must present."""

    token: str
    git_version: str = "v1.37.0-shoal"
    address: str = "127.0.0.1:6443"


SERVICE = web.AppKey("service", ObjectService)
INFO = web.AppKey("info", ServerInfo)


def make_handler(
    service: ObjectService, info: ServerInfo
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The request handler serving the Kubernetes API over ``service``, for aiohttp's
    low-level ``web.Server(handler, request_factory=request_factory(loop))``, whose requests
    are ``web.Request`` objects."""

    async def handle(base: web.BaseRequest) -> web.StreamResponse:
        request = cast(web.Request, base)  # made by request_factory
        try:
            if request.path not in OPEN_PATHS:
                _authenticate(request, info)
            if request.headers.get("Expect"):
                await _expect(request)
            return await _dispatch(request, service, info)
        except APIError as error:
            return status_response(error)
        except web.HTTPRequestEntityTooLarge:
            return status_response(
                APIError("RequestEntityTooLarge", "the request body is larger than 3 MiB")
            )
        except web.HTTPException as error:
            reason = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed"}.get(
                error.status, "BadRequest"
            )
            return status_response(APIError(reason, error.reason or "bad request"))
        except (ConnectionResetError, TimeoutError):
            raise
        except Exception:
            logger.exception("internal error answering %s %s", request.method, request.path)
            return status_response(
                APIError("InternalError", "an internal error occurred; see the server's log")
            )

    return handle


def request_factory(
    loop: asyncio.AbstractEventLoop,
) -> Callable[..., web.BaseRequest]:
    """What ``web.Server`` makes each request with: a ``web.Request`` (the handlers' type)
    that accepts bodies up to Kubernetes' 3 MiB."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        return web.Request(message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY)

    return make


def make_app(service: ObjectService, info: ServerInfo) -> web.Application:
    """An aiohttp ``Application`` around :func:`make_handler` (one catch-all route); the
    server itself runs the handler on the low-level ``web.Server``."""
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[INFO] = info
    app.router.add_route("*", "/{tail:.*}", make_handler(service, info))
    return app


def _json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    # Exactly `application/json`, as Kubernetes answers: some clients (lightkube) compare the
    # whole header, so aiohttp's `; charset=utf-8` would hide every error body from them.
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


# -- errors and authentication --------------------------------------------------------------


def status_response(error: APIError) -> web.Response:
    headers = {}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(error.retry_after_seconds)
    return _json_response(error.to_status(), status=error.code, headers=headers)


def _authenticate(request: web.Request, info: ServerInfo) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not tokens_equal(token.strip(), info.token):
        raise APIError("Unauthorized", "Unauthorized")


async def _expect(request: web.Request) -> None:
    """``Expect: 100-continue`` as aiohttp's router answers it (curl sends it before large
    bodies): a ``100 Continue``, then the client sends the body."""
    expect = request.headers.get("Expect", "")
    if request.version == HttpVersion11:
        if expect.lower() != "100-continue":
            raise APIError("BadRequest", f"unknown Expect: {expect}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's body has not started


# -- dispatch ---------------------------------------------------------------------------------

NOT_FOUND = "the server could not find the requested resource"


async def _dispatch(
    request: web.Request, service: ObjectService, info: ServerInfo
) -> web.StreamResponse:
    path = request.path
    if path in ("/healthz", "/livez", "/readyz"):
        return web.Response(text="ok", content_type="text/plain")
    if path == "/version":
        _only(request, "GET")
        return _json_response(_version(info))
    if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
        _only(request, "GET")
        return _json_response(openapi.answer(service.registry, path))
    registry = service.registry
    target = parse_path(path, lambda g, v, p: registry.lookup(g, v, p) is not None)
    if target is None:
        raise APIError("NotFound", NOT_FOUND)
    if isinstance(target, Discovery):
        _only(request, "GET")
        if target.what in ("api", "apis"):
            version = aggregated.wants_aggregated(request.headers.get("Accept", ""))
            if version is not None:
                document = aggregated.aggregated_discovery(service.registry, target.what, version)
                return web.Response(
                    body=json.dumps(document, separators=(",", ":")).encode(),
                    headers={"Content-Type": aggregated.MEDIA_TYPES[version]},
                )
        return _json_response(_discovery(service, info, target))
    return await _resource_request(request, service, target)


def _only(request: web.Request, *methods: str) -> None:
    if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
        raise APIError(
            "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )


def _version(info: ServerInfo) -> Body:
    major, minor = info.git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": info.git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "python",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def _discovery(service: ObjectService, info: ServerInfo, target: Discovery) -> Body:
    registry = service.registry
    if target.what == "api":
        return registry.api_versions(info.address)
    if target.what == "apis":
        return registry.group_list()
    if target.what == "group":
        group = registry.group(target.group)
        if group is None:
            raise APIError("NotFound", NOT_FOUND)
        return group
    resources = registry.resource_list(target.group, target.version)
    if resources is None:
        raise APIError("NotFound", NOT_FOUND)
    return resources


# -- resources --------------------------------------------------------------------------------


async def _resource_request(
    request: web.Request, service: ObjectService, target: ObjectPath
) -> web.StreamResponse:
    resource = service.registry.lookup(target.group, target.version, target.plural)
    if resource is None:
        raise APIError("NotFound", NOT_FOUND)
    if target.namespace is not None and not resource.namespaced:
        raise APIError("NotFound", NOT_FOUND)
    if (
        target.subresource not in (None, "status", "scale")
        or (target.subresource == "status" and not resource.status_subresource)
        or (target.subresource == "scale" and resource.scale is None)
    ):
        raise APIError("NotFound", NOT_FOUND)
    if resource.namespaced and target.name is not None and target.namespace is None:
        raise APIError("NotFound", NOT_FOUND)
    method = request.method
    query = request.query
    if target.subresource == "scale" and target.name is not None:
        return await _scale(request, service, resource, target)
    if target.name is None:
        if method in ("GET", "HEAD"):
            if query.get("watch") in ("1", "true"):
                return await _watch(request, service, resource, target)
            return await _list(request, service, resource, target)
        if method == "POST":
            return await _create(request, service, resource, target)
        if method == "DELETE":
            return await _delete_collection(request, service, resource, target)
        raise APIError(
            "MethodNotAllowed", f"the server does not allow this method on {target.plural}"
        )
    if method in ("GET", "HEAD"):
        obj = await service.get(resource, target.namespace, target.name)
        return _object_response(request, resource, obj)
    if method == "PUT":
        body = await _body(request)
        result = await service.update(
            resource,
            target.namespace,
            target.name,
            body,
            _write_options(request),
            subresource=target.subresource,
            owned=True,  # the request's own parsed body
        )
        return _write_response(request, resource, result, 200)
    if method == "PATCH":
        return await _patch(request, service, resource, target)
    if method == "DELETE" and target.subresource is None:
        options = await _delete_options(request)
        obj, gone = await service.delete(resource, target.namespace, target.name, options)
        return _object_response(request, resource, obj, status=200 if gone else 202)
    raise APIError(
        "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def _patch_options_invalid(field: str, message: str, cause: str) -> APIError:
    """422 for bad PatchOptions, in Kubernetes' words (``ValidatePatchOptions``)."""
    return APIError(
        "Invalid",
        f'PatchOptions.meta.k8s.io "" is invalid: {field}: {message}',
        group="meta.k8s.io",
        kind="PatchOptions",
        causes=[Cause(cause, message, field)],
    )


def _force(request: web.Request, *, apply: bool) -> bool:
    """The ``force`` query parameter: only server-side apply takes it."""
    raw = request.query.get("force")
    if raw is None:
        return False
    if not apply:
        raise _patch_options_invalid(
            "force", "Forbidden: may not be specified for non-apply patch", "FieldValueForbidden"
        )
    if raw.lower() not in ("true", "false", "1", "0", ""):
        raise APIError("BadRequest", f"force: invalid boolean value {raw!r}")
    return raw.lower() in ("true", "1")


def _write_options(request: web.Request, *, apply: bool = False) -> WriteOptions:
    """The write's options; ``apply`` (server-side apply) requires ``fieldManager`` (422), where
    other writes default it to the User-Agent's first word, as Kubernetes does."""
    query = request.query
    dry_run = query.getall("dryRun", [])
    for value in dry_run:
        if value != "All":
            raise APIError(
                "BadRequest", f'Invalid dry run value: "{value}": supported values: "All"'
            )
    if apply:
        manager = query.get("fieldManager") or ""
        if not manager:
            raise _patch_options_invalid(
                "fieldManager",
                "Required value: is required for apply patch",
                "FieldValueRequired",
            )
    else:
        manager = (
            query.get("fieldManager") or request.headers.get("User-Agent", "unknown").split("/")[0]
        )
    if len(manager) > 128:
        raise APIError(
            "BadRequest", "fieldManager: Too long: may not be longer than 128 characters"
        )
    return WriteOptions(
        dry_run=bool(dry_run),
        field_validation=parse_field_validation(query.get("fieldValidation")),
        manager=manager or "unknown",
    )


BODY_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml")


def _unsupported(content_type: str) -> APIError:
    return APIError(
        "UnsupportedMediaType",
        f'the body of the request was in an unknown format "{content_type}" - accepted media '
        "types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
    )


async def _body(request: web.Request) -> Body:
    content_type = request.content_type
    if content_type not in BODY_TYPES and content_type not in (
        "application/octet-stream",
        protobuf.MEDIA_TYPE,
    ):
        raise _unsupported(content_type)
    raw = await request.read()
    if not raw.strip():
        raise APIError("BadRequest", "the request body is empty; send the object as JSON or YAML")
    data = _decode(raw, content_type)
    if not isinstance(data, dict):
        raise APIError("BadRequest", "the request body must be a JSON object")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type == protobuf.MEDIA_TYPE:
        # client-go's typed clients (kubectl create configmap/deployment/...) send built-in
        # kinds as protobuf and cannot fall back to JSON; they accept JSON answers.
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as error:
            raise APIError(
                "BadRequest",
                f"the protobuf request body could not be read: {error} (shoal reads protobuf "
                "for the built-in kinds it serves; JSON and YAML bodies work for every kind)",
            ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError("BadRequest", "the request body is not UTF-8") from None
    try:
        if "yaml" in content_type:
            data = yaml.safe_load(text)
            _check_finite(data)
            return data
        return loads(text, parse_constant=_reject_constant)
    except (ValueError, yaml.YAMLError, RecursionError) as error:
        what = "YAML" if "yaml" in content_type else "JSON"
        raise APIError("BadRequest", f"the request body is not valid {what}: {error}") from None


def _check_finite(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinities are not allowed")
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise ValueError(f"object keys must be strings, got {key!r}")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif not isinstance(item, str | int | float | bool | type(None)):
            raise ValueError(f"unsupported YAML value of type {type(item).__name__}")


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit():
        raise APIError("BadRequest", f"{name}: must be a non-negative integer, got {raw!r}")
    return int(raw)


def _selectors(request: web.Request) -> tuple[Any, Any]:
    try:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
    except SelectorError as error:
        raise APIError("BadRequest", str(error)) from None
    return labels, fields


# -- output formats ---------------------------------------------------------------------------


def _accepts(request: web.Request) -> str:
    """``Table``, ``PartialObjectMetadata`` or ``json`` from the Accept header."""
    for part in request.headers.get("Accept", "").split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        media = part.split(";")[0].strip()
        if media not in ("application/json", "*/*", "application/*"):
            if media == "application/yaml":
                return "json"
            continue
        as_ = params.get("as")
        if as_ is None:
            return "json"
        if params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            if as_ == "Table":
                return "Table"
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return "PartialObjectMetadata"
    if request.headers.get("Accept") and not any(
        m in request.headers.get("Accept", "") for m in ("json", "*/*", "yaml")
    ):
        raise APIError("NotAcceptable", "only application/json is served")
    return "json"


def _table(request: web.Request, resource: Resource, items: list[Body], **meta: Any) -> Body:
    spec = table_spec_for(resource.kind, resource.printer_columns)
    include = request.query.get("includeObject") or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise APIError("BadRequest", f"includeObject: Unsupported value: {include!r}")
    table = table_for(spec, items, include_object=include, **meta)
    dates = [i for i, c in enumerate(table["columnDefinitions"]) if c["type"] == "date"]
    now = dt.datetime.now(dt.UTC)
    for row in table["rows"]:
        for i in dates:
            row["cells"][i] = human_age(row["cells"][i], now)
    return table


def human_age(value: Any, now: dt.datetime) -> Any:
    """A timestamp cell as the age kubectl shows (``45s``, ``3m12s``, ``5h``, ``12d``), the way
    the Kubernetes API server fills date columns; other values are left as they are."""
    if not isinstance(value, str):
        return "<unknown>" if value is None else value
    try:
        then = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    seconds = int((now - then).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def _partial(obj: Body) -> Body:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def _object_response(
    request: web.Request,
    resource: Resource,
    obj: Body,
    *,
    status: int = 200,
    warnings: list[str] | None = None,
) -> web.Response:
    form = _accepts(request)
    if form == "Table":
        body = _table(
            request, resource, [obj], resource_version=obj["metadata"].get("resourceVersion", "")
        )
    elif form == "PartialObjectMetadata":
        body = _partial(obj)
    else:
        body = obj
    response = _json_response(body, status=status)
    for warning in warnings or ():
        response.headers.add("Warning", f'299 - "{_quote(warning)}"')
    return response


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _write_response(
    request: web.Request, resource: Resource, result: WriteResult, status: int
) -> web.Response:
    if result.stored is not None and _accepts(request) == "json":
        revision = result.object["metadata"]["resourceVersion"]
        text = item_text(result.stored, int(revision), resource.api_version)
        if text is not None:
            response = web.Response(
                body=text.encode(), status=status, headers={"Content-Type": "application/json"}
            )
            for warning in result.warnings:
                response.headers.add("Warning", f'299 - "{_quote(warning)}"')
            return response
    return _object_response(
        request, resource, result.object, status=status, warnings=result.warnings
    )


# -- verbs ------------------------------------------------------------------------------------


async def _list(
    request: web.Request, service: ObjectService, resource: Resource, target: ObjectPath
) -> web.Response:
    labels, fields = _selectors(request)
    limit = _int_param(request, "limit")
    rv = request.query.get("resourceVersion")
    match = request.query.get("resourceVersionMatch")
    if match not in (None, "", "Exact", "NotOlderThan"):
        raise APIError("BadRequest", f"resourceVersionMatch: Unsupported value: {match!r}")
    revision = None
    if rv not in (None, "", "0"):
        if not rv.isdigit():
            raise APIError(
                "BadRequest", f"invalid resourceVersion {rv!r}: must be a storage revision"
            )
        current = await service.store.current_revision()
        if match == "Exact" or int(rv) > current:
            revision = int(rv)  # the store answers 504 Timeout for a revision not reached
    form = _accepts(request)
    if form == "json" and not labels.requirements and not fields.terms:
        return await _list_texts(request, service, resource, target, limit, revision)
    result = await service.list(
        resource,
        target.namespace,
        labels=labels,
        fields=fields,
        limit=limit,
        continue_token=request.query.get("continue") or None,
        revision=revision,
    )
    if form == "Table":
        body = _table(
            request,
            resource,
            result.items,
            resource_version=str(result.revision),
            continue_token=result.continue_token,
        )
        return _json_response(body)
    metadata: Body = {"resourceVersion": str(result.revision)}
    if result.continue_token:
        metadata["continue"] = result.continue_token
    if form == "PartialObjectMetadata":
        return _json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
                "items": [_partial(item) for item in result.items],
            }
        )
    return _json_response(
        {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": result.items,
        }
    )


async def _list_texts(
    request: web.Request,
    service: ObjectService,
    resource: Resource,
    target: ObjectPath,
    limit: int | None,
    revision: int | None,
) -> web.Response:
    """A plain JSON list without selectors, written from the items' stored texts (the common
    case, and the one that grows with the collection: no decode and re-encode per item)."""
    texts, at, token = await service.list_texts(
        resource,
        target.namespace,
        limit=limit,
        continue_token=request.query.get("continue") or None,
        revision=revision,
    )
    metadata: Body = {"resourceVersion": str(at)}
    if token:
        metadata["continue"] = token
    head = json.dumps(
        {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": metadata},
        separators=(",", ":"),
    )
    body = "".join((head[:-1], ',"items":[', ",".join(texts), "]}"))
    return web.Response(
        body=body.encode(),
        headers={"Content-Type": "application/json"},
    )


async def _watch(
    request: web.Request, service: ObjectService, resource: Resource, target: ObjectPath
) -> web.StreamResponse:
    labels, fields = _selectors(request)
    timeout = _int_param(request, "timeoutSeconds")
    form = _accepts(request)

    def encode(obj: Body) -> Body:
        if form == "Table":
            return _table(
                request, resource, [obj], resource_version=obj["metadata"]["resourceVersion"]
            )
        if form == "PartialObjectMetadata":
            return _partial(obj)
        return obj

    watch = WatchRequest(
        resource=resource,
        namespace=target.namespace,
        labels=labels,
        fields=fields,
        resource_version=request.query.get("resourceVersion"),
        bookmarks=request.query.get("allowWatchBookmarks") == "true",
        send_initial_events=check_watch_list(request.query),
        timeout=float(timeout) if timeout else DEFAULT_TIMEOUT,
        plain_json=form == "json",
    )
    return await serve_watch(request, service, watch, encode)


async def _create(
    request: web.Request, service: ObjectService, resource: Resource, target: ObjectPath
) -> web.Response:
    body = await _body(request)
    for key, expected in (("apiVersion", resource.api_version), ("kind", resource.kind)):
        value = body.get(key)
        if (
            value is not None
            and value != expected
            and not (
                key == "apiVersion"
                and resource.model is not None
                and isinstance(value, str)
                and resource.model.INFO.accepts_api_version(value)
            )
        ):
            raise APIError(
                "BadRequest",
                f"the {key} in the data ({value}) does not match the expected {key} ({expected})",
            )
    result = await service.create(
        resource, target.namespace, body, _write_options(request), owned=True
    )
    return _write_response(request, resource, result, 201)


def _patcher(request: web.Request, resource: Resource, raw: bytes) -> Callable[[Body], Body]:
    """The function that applies the request's JSON, merge or strategic merge patch to the
    current object (server-side apply goes through :func:`_apply`)."""
    content_type = request.content_type
    try:
        document = patching.decode_patch(content_type, raw)
    except patching.PatchError as error:
        raise error.to_api_error() from None

    def run(current: Body) -> Body:
        try:
            return patching.patch_object(current, content_type, document, kind=resource.model)
        except patching.PatchError as error:
            raise error.to_api_error() from None

    return run


async def _patch(
    request: web.Request, service: ObjectService, resource: Resource, target: ObjectPath
) -> web.Response:
    assert target.name is not None
    raw = await request.read()
    if request.content_type == APPLY_PATCH:
        return await _apply(request, service, resource, target, raw)
    _force(request, apply=False)
    apply = _patcher(request, resource, raw)
    result = await service.patch(
        resource,
        target.namespace,
        target.name,
        apply,
        _write_options(request),
        subresource=target.subresource,
    )
    return _write_response(request, resource, result, 200)


async def _scale(
    request: web.Request, service: ObjectService, resource: Resource, target: ObjectPath
) -> web.Response:
    """``/scale``: the object's replica count as an ``autoscaling/v1`` ``Scale``; writes (PUT,
    or a patch of the ``Scale``) change the object's replicas (``kubectl scale``)."""
    assert target.name is not None
    method = request.method
    if method in ("GET", "HEAD"):
        obj = await service.get(resource, target.namespace, target.name)
        return _json_response(scaling.scale_of(resource, obj))
    change: Callable[[Body], Body]
    if method == "PUT":
        body = await _body(request)

        def change(current: Body) -> Body:
            return scaling.with_replicas(resource, current, body)

    elif method == "PATCH":
        raw = await request.read()
        media = request.content_type
        if media == STRATEGIC_PATCH:
            media = MERGE_PATCH  # a Scale has no lists: a strategic merge is a merge patch
        if media not in (MERGE_PATCH, JSON_PATCH):
            raise APIError(
                "UnsupportedMediaType",
                f'the body of the request was in an unknown format "{request.content_type}" - '
                f"accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}",
            )
        _force(request, apply=False)
        try:
            document = patching.decode_patch(media, raw)
        except patching.PatchError as error:
            raise error.to_api_error() from None

        def change(current: Body) -> Body:
            view = scaling.scale_of(resource, current)
            try:
                patched = patching.patch_object(view, media, document)
            except patching.PatchError as error:
                raise error.to_api_error() from None
            return scaling.with_replicas(resource, current, patched)

    else:
        raise APIError(
            "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )
    result = await service.patch(
        resource, target.namespace, target.name, change, _write_options(request)
    )
    response = _json_response(scaling.scale_of(resource, result.object))
    for warning in result.warnings:
        response.headers.add("Warning", f'299 - "{_quote(warning)}"')
    return response


async def _apply(
    request: web.Request,
    service: ObjectService,
    resource: Resource,
    target: ObjectPath,
    raw: bytes,
) -> web.Response:
    """Server-side apply: 201 when the apply created the object, else 200."""
    assert target.name is not None
    options = _write_options(request, apply=True)
    force = _force(request, apply=True)
    if not raw.strip():
        raise APIError("BadRequest", "the request body is empty; send the applied configuration")
    applied = _decode(raw, APPLY_PATCH)
    result = await service.apply(
        resource,
        target.namespace,
        target.name,
        applied,
        options,
        force=force,
        subresource=target.subresource,
    )
    return _write_response(request, resource, result, 201 if result.created else 200)


async def _delete_options(request: web.Request) -> DeleteOptions:
    raw = await request.read()
    body: Mapping[str, Any] = {}
    if raw.strip():
        decoded = _decode(raw, request.content_type)
        if not isinstance(decoded, dict):
            raise APIError("BadRequest", "DeleteOptions must be a JSON object")
        body = decoded
    query = request.query
    policy = query.get("propagationPolicy") or body.get("propagationPolicy")
    orphan = query.get("orphanDependents") or body.get("orphanDependents")
    if policy is None and orphan in (True, "true"):
        policy = "Orphan"
    if policy is None:
        policy = "Background"
    if policy not in ("Background", "Foreground", "Orphan"):
        raise APIError(
            "BadRequest",
            f'propagationPolicy: Unsupported value: "{policy}": supported values: "Background", '
            '"Foreground", "Orphan"',
        )
    dry_run = list(query.getall("dryRun", [])) + list(body.get("dryRun") or [])
    for value in dry_run:
        if value != "All":
            raise APIError(
                "BadRequest", f'Invalid dry run value: "{value}": supported values: "All"'
            )
    preconditions = body.get("preconditions") or {}
    if not isinstance(preconditions, dict):
        raise APIError("BadRequest", "preconditions must be an object")
    grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
    if grace is not None:
        try:
            grace = int(grace)
        except (TypeError, ValueError):
            raise APIError(
                "BadRequest", f'gracePeriodSeconds: Invalid value: "{grace}": must be an integer'
            ) from None
    return DeleteOptions(
        grace_period_seconds=grace,
        dry_run=bool(dry_run),
        propagation=cast(Propagation, policy),
        precondition_uid=preconditions.get("uid"),
        precondition_resource_version=preconditions.get("resourceVersion"),
    )


async def _delete_collection(
    request: web.Request, service: ObjectService, resource: Resource, target: ObjectPath
) -> web.Response:
    labels, fields = _selectors(request)
    options = await _delete_options(request)
    result = await service.delete_collection(
        resource, target.namespace, options, labels=labels, fields=fields
    )
    return _json_response(
        {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(result.revision)},
            "items": result.items,
        }
    )
