"""The :class:`~shoal.client.ObjectAPI` over HTTP, for shoal's API server and Kubernetes alike.

::

    async with HTTPClient.from_kubeconfig() as api:
        ref = ResourceRef("apps/v1", "Deployment", "default")
        deployments = await api.list(ref, label_selector="app=web")
        async for event in api.watch(ref, deployments.resource_version): ...

Theory of operation
-------------------
* **One session**: one ``aiohttp.ClientSession`` per client (keep-alive connections), TLS verified
  against the kubeconfig's CA, the bearer token (or client certificate) on every request.
* **Paths from discovery**: a ``ResourceRef`` names ``apiVersion`` and ``kind``; the resource's
  plural and scope come from the group version's discovery document (``/api/v1`` or
  ``/apis/G/V``), fetched once and cached. A kind missing from the cached document (a CRD created
  since) refetches it once. Only standard Kubernetes paths, query parameters and headers are used,
  so the same client works against a real cluster.
* **Errors** are read from the ``Status`` the server answers with: 404 raises
  :class:`NotFoundError` (an :class:`~shoal.client.APINotFound`), 409 :class:`ConflictError` (an
  :class:`~shoal.client.APIConflict`, also for ``AlreadyExists``), 410
  :class:`~shoal.client.WatchExpired`; 429 and 5xx :class:`APIRetryableError`, the rest
  :class:`APIError`. Both carry the :class:`Status` (reason, code, message, causes). A
  connection failure raises :class:`APIRetryableError` with no HTTP code (code 0).
* **Watches** read the newline-delimited JSON events as they arrive; an ``ERROR`` event with a
  410 Status (or an HTTP 410) raises :class:`~shoal.client.WatchExpired`; the stream ends when the
  server closes it (``timeoutSeconds``), and the caller watches again from the last revision.
* **Apply** tries server-side apply first (``PATCH`` with ``application/apply-patch+yaml``); a
  server that answers 415 gets create-or-update instead (create, or a JSON merge patch of the
  applied fields), and :class:`ApplyResult` says which path ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp

from shoal.client.kubeconfig import KubeConfig, load_kubeconfig
from shoal.client.protocol import (
    APIConflict,
    APINotFound,
    ListResult,
    ResourceRef,
    WatchEvent,
    WatchExpired,
)
from shoal.errors import PermanentError, RetryableError

__all__ = [
    "APIError",
    "APIResource",
    "APIRetryableError",
    "ApplyResult",
    "ConflictError",
    "HTTPClient",
    "NotFoundError",
    "PatchType",
    "Status",
    "UnknownResource",
    "merge_patch",
    "status_causes",
]

log = logging.getLogger("shoal.client.http")

Body = dict[str, Any]
PatchType = Literal["json", "merge", "strategic", "apply"]
PropagationPolicy = Literal["Background", "Foreground", "Orphan"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
TABLE_ACCEPT = "application/json;as=Table;g=meta.k8s.io;v=v1,application/json"
RETRYABLE_CODES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Status:
    """A Kubernetes ``Status`` (``metav1.Status``): why a request failed."""

    code: int
    reason: str
    message: str
    causes: tuple[Mapping[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Any, code: int, fallback: str) -> Status:
        if isinstance(body, dict) and body.get("kind") == "Status":
            details = body.get("details") or {}
            causes = details.get("causes") or [] if isinstance(details, dict) else []
            return cls(
                code=int(body.get("code") or code),
                reason=str(body.get("reason") or ""),
                message=str(body.get("message") or fallback),
                causes=tuple(c for c in causes if isinstance(c, dict)),
                details=details if isinstance(details, dict) else {},
            )
        return cls(code=code, reason="", message=fallback)

    def __str__(self) -> str:
        return self.message


class APIError(PermanentError):
    """The server refused the request, and retrying the same request will not help."""

    status: Status

    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status


class APIRetryableError(RetryableError):
    """The server (or the connection) failed in a way that may pass: 429, 5xx, a reset socket."""

    status: Status

    def __init__(self, status: Status, *, retry_after: float = 1.0) -> None:
        super().__init__(status.message, retry_after=retry_after)
        self.status = status


class NotFoundError(APINotFound):
    """404: the object (or its namespace) does not exist."""

    status: Status

    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status


class ConflictError(APIConflict):
    """409: a stale ``resourceVersion`` (reason ``Conflict``) or a name taken (``AlreadyExists``)."""

    status: Status

    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status


class UnknownResource(PermanentError):
    """No resource is served for this ``apiVersion``/``kind`` (or name): is its CRD installed?"""


@dataclass(frozen=True, slots=True)
class APIResource:
    """One resource of a discovery document."""

    group: str
    version: str
    name: str
    """The plural, as in URLs."""
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_kind(self) -> str:
        """``kind.group`` in lower case, as kubectl names objects (``deployment.apps``)."""
        lower = self.kind.lower()
        return f"{lower}.{self.group}" if self.group else lower

    @property
    def qualified_name(self) -> str:
        """``plural.group`` (``deployments.apps``), as kubectl names resources in messages."""
        return f"{self.name}.{self.group}" if self.group else self.name


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What :meth:`HTTPClient.apply` did."""

    object: Body
    outcome: Literal["created", "configured", "unchanged"]
    method: Literal["server-side", "create-or-update"]
    note: str = ""
    """Why create-or-update ran instead of server-side apply (empty when it did not)."""


class HTTPClient:
    """An async Kubernetes API client; implements :class:`~shoal.client.ObjectAPI` for any kind.

    Use it as ``async with``; :meth:`close` ends the session. ``namespace`` is where namespaced
    objects go when neither the ``ResourceRef`` nor the body names one (the kubeconfig's context
    namespace by default).
    """

    def __init__(
        self,
        config: KubeConfig,
        *,
        namespace: str | None = None,
        timeout: float = 30.0,
        watch_timeout: int = 300,
        user_agent: str = "shoal",
        page_size: int = 500,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.namespace = namespace or config.namespace
        self.timeout = timeout
        self.watch_timeout = watch_timeout
        self.user_agent = user_agent
        self.page_size = page_size
        self.on_warning = on_warning or (lambda text: log.warning("server warning: %s", text))
        self._session: aiohttp.ClientSession | None = None
        self._versions: dict[str, tuple[APIResource, ...]] = {}
        self._group_versions: list[str] | None = None
        self._apply_unsupported = False
        """Set once the server answered a server-side apply with 415; not asked again."""

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> HTTPClient:
        """A client for the kubeconfig found as :func:`~shoal.client.kubeconfig.load_kubeconfig`
        finds it."""
        config = load_kubeconfig(path, context=context, namespace=namespace)
        return cls(config, **options)

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            context = self.config.ssl_context()
            connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={
                    **self.config.headers,
                    "User-Agent": self.user_agent,
                    "Accept": "application/json",
                },
            )
        return self._session

    # -- low level ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> Any:
        """One request to ``path`` (``/api/v1/...``); the parsed JSON answer, or an error raised
        as the module's docstring says."""
        session = self._ensure_session()
        headers: dict[str, str] = {}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        url = self.config.server + path
        try:
            async with session.request(
                method,
                url,
                params=dict(params or {}),
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                self._warnings(response)
                text = await response.text()
                if response.status >= 400:
                    raise _error(response.status, text, response.headers.get("Retry-After"))
                return json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _connection_error(method, url, error) from error

    def _warnings(self, response: aiohttp.ClientResponse) -> None:
        for value in response.headers.getall("Warning", []):
            # RFC 7234 form: 299 - "text"
            parts = value.split(" ", 2)
            text = parts[2] if len(parts) == 3 else value
            if text.startswith('"') and text.endswith('"'):
                text = text[1:-1].replace('\\"', '"')
            self.on_warning(text)

    # -- discovery ------------------------------------------------------------------------------

    async def resources(
        self, api_version: str, *, refresh: bool = False
    ) -> tuple[APIResource, ...]:
        """The resources served at ``api_version`` (cached; ``refresh`` fetches again)."""
        if refresh or api_version not in self._versions:
            group, _, version = api_version.rpartition("/")
            path = f"/apis/{api_version}" if group else f"/api/{version}"
            try:
                document = await self.request("GET", path)
            except APINotFound:
                raise UnknownResource(
                    f"the server does not serve apiVersion {api_version!r}"
                ) from None
            found: list[APIResource] = []
            for entry in document.get("resources", []):
                name = str(entry.get("name", ""))
                if not name or "/" in name:
                    continue  # subresources
                found.append(
                    APIResource(
                        group=group,
                        version=version,
                        name=name,
                        kind=str(entry.get("kind", "")),
                        namespaced=bool(entry.get("namespaced", False)),
                        singular=str(entry.get("singularName") or ""),
                        short_names=tuple(entry.get("shortNames") or ()),
                        verbs=tuple(entry.get("verbs") or ()),
                        categories=tuple(entry.get("categories") or ()),
                    )
                )
            self._versions[api_version] = tuple(found)
        return self._versions[api_version]

    async def resource_for(self, api_version: str, kind: str) -> APIResource:
        """The resource that serves ``kind`` at ``api_version``; refetches discovery once when the
        cached document lacks it (a CRD created since)."""
        for refresh in (False, True):
            with contextlib.suppress(UnknownResource):
                for resource in await self.resources(api_version, refresh=refresh):
                    if resource.kind == kind:
                        return resource
        raise UnknownResource(
            f'no matches for kind "{kind}" in version "{api_version}" '
            "(is its CustomResourceDefinition installed?)"
        )

    async def group_versions(self, *, refresh: bool = False) -> list[str]:
        """Every preferred group version the server serves, core first, in the server's order."""
        if refresh or self._group_versions is None:
            core = await self.request("GET", "/api")
            versions = [str(v) for v in core.get("versions", [])[:1]]
            groups = await self.request("GET", "/apis")
            for group in groups.get("groups", []):
                preferred = group.get("preferredVersion") or (group.get("versions") or [{}])[0]
                if preferred.get("groupVersion"):
                    versions.append(str(preferred["groupVersion"]))
            self._group_versions = versions
        return self._group_versions

    async def find_resource(self, name: str) -> APIResource:
        """The resource a user means by ``name``, as kubectl resolves it: a plural, singular,
        short name or kind (any case), optionally qualified by group (``deployments.apps``,
        ``gadget.example.com``) or group version (``deployments.v1.apps``)."""
        for refresh in (False, True):
            found = await self._find(name.strip(), refresh)
            if found is not None:
                return found
        raise UnknownResource(f'the server doesn\'t have a resource type "{name}"')

    async def _find(self, name: str, refresh: bool) -> APIResource | None:
        lower = name.lower()
        versions = await self.group_versions(refresh=refresh)
        candidates: list[tuple[str, str | None, str | None]] = [(lower, None, None)]
        if "." in lower:
            head, _, rest = lower.partition(".")
            candidates.append((head, rest, None))
            version, _, group = rest.partition(".")
            if group:
                candidates.append((head, group, version))
        for api_version in versions:
            group, _, version = api_version.rpartition("/")
            for wanted, wanted_group, wanted_version in candidates:
                if wanted_group is not None and wanted_group != group:
                    continue
                if wanted_version is not None and wanted_version != version:
                    continue
                for resource in await self.resources(api_version, refresh=refresh):
                    names = {resource.name, resource.singular, resource.kind.lower()}
                    if wanted in names or wanted in resource.short_names:
                        return resource
        # A group version that is not preferred, named explicitly (``deployments.v1.apps``).
        return None

    async def _path(
        self, ref: ResourceRef, name: str | None = None, *, namespace: str | None = None
    ) -> tuple[APIResource, str]:
        resource = await self.resource_for(ref.api_version, ref.kind)
        base = f"/apis/{ref.api_version}" if resource.group else f"/api/{resource.version}"
        place = namespace if namespace is not None else ref.namespace
        if resource.namespaced and place:
            base += f"/namespaces/{place}"
        path = f"{base}/{resource.name}"
        if name is not None:
            path += f"/{name}"
        return resource, path

    def _namespace_of(self, ref: ResourceRef, body: Mapping[str, Any] | None = None) -> str:
        if ref.namespace:
            return ref.namespace
        metadata = (body or {}).get("metadata") or {}
        return str(metadata.get("namespace") or self.namespace)

    async def _object_path(
        self, ref: ResourceRef, name: str, body: Mapping[str, Any] | None = None
    ) -> tuple[APIResource, str]:
        resource = await self.resource_for(ref.api_version, ref.kind)
        namespace = self._namespace_of(ref, body) if resource.namespaced else None
        return await self._path(ref, name, namespace=namespace or "")

    # -- ObjectAPI ------------------------------------------------------------------------------

    async def list(
        self,
        ref: ResourceRef,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListResult:
        """Every object of ``ref`` (all namespaces when ``ref.namespace`` is None), read in
        pages of one snapshot; the revision to watch from."""
        _, path = await self._path(ref)
        params = _selectors(label_selector, field_selector)
        params["limit"] = str(self.page_size)
        items: list[Body] = []
        while True:
            page = await self.request("GET", path, params=params)
            kind = ref.kind
            for item in page.get("items", []):
                # Lists omit apiVersion/kind on items; put them back, as watches send them.
                item.setdefault("apiVersion", ref.api_version)
                item.setdefault("kind", kind)
                items.append(item)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return ListResult(items, str(metadata.get("resourceVersion", "")))
            params["continue"] = str(token)

    async def watch(
        self,
        ref: ResourceRef,
        resource_version: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """The changes after ``resource_version`` (``""`` or ``"0"``: current state first), with
        bookmarks, until the server ends the stream."""
        _, path = await self._path(ref)
        params = _selectors(label_selector, field_selector)
        params.update(
            watch="1",
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds or self.watch_timeout),
        )
        if resource_version:
            params["resourceVersion"] = resource_version
        session = self._ensure_session()
        url = self.config.server + path
        try:
            async with session.get(
                url,
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
            ) as response:
                self._warnings(response)
                if response.status >= 400:
                    text = await response.text()
                    raise _error(response.status, text, response.headers.get("Retry-After"))
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield _event(line)
                if buffer.strip():
                    yield _event(buffer)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _connection_error("WATCH", url, error) from error

    async def get(self, ref: ResourceRef, name: str) -> Body:
        _, path = await self._object_path(ref, name)
        body: Body = await self.request("GET", path)
        return body

    async def create(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body:
        resource = await self.resource_for(ref.api_version, ref.kind)
        namespace = self._namespace_of(ref, body) if resource.namespaced else ""
        _, path = await self._path(ref, namespace=namespace)
        created: Body = await self.request("POST", path, body=_with_type(body, ref))
        return created

    async def update(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body:
        _, path = await self._object_path(ref, _name(body), body)
        updated: Body = await self.request("PUT", path, body=_with_type(body, ref))
        return updated

    async def update_status(self, ref: ResourceRef, body: Mapping[str, Any]) -> Body:
        _, path = await self._object_path(ref, _name(body), body)
        updated: Body = await self.request("PUT", path + "/status", body=_with_type(body, ref))
        return updated

    async def delete(
        self,
        ref: ResourceRef,
        name: str,
        *,
        propagation_policy: PropagationPolicy | None = None,
        grace_period_seconds: int | None = None,
    ) -> None:
        _, path = await self._object_path(ref, name)
        options: Body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            # A Pod on a node is kept this long while the node stops it (0: remove it now).
            options["gracePeriodSeconds"] = grace_period_seconds
        await self.request("DELETE", path, body=options)

    # -- beyond the protocol --------------------------------------------------------------------

    async def patch(
        self,
        ref: ResourceRef,
        name: str,
        body: Any,
        patch_type: PatchType = "merge",
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> Body:
        """A JSON patch (a list of operations), JSON merge patch, strategic merge patch
        (built-in kinds only) or server-side apply patch of one object."""
        _, path = await self._object_path(ref, name, body if isinstance(body, Mapping) else None)
        if subresource:
            path += f"/{subresource}"
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        patched: Body = await self.request(
            "PATCH", path, params=params, body=body, content_type=PATCH_CONTENT_TYPES[patch_type]
        )
        return patched

    async def apply(
        self, body: Mapping[str, Any], *, field_manager: str = "shoal", force: bool = False
    ) -> ApplyResult:
        """Make the object look like ``body``: server-side apply when the server supports it,
        else create-or-update (create; or a JSON merge patch when the applied fields differ)."""
        ref = ResourceRef(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        name = _name(body)
        before: Body | None
        try:
            before = await self.get(ref, name) if name else None
        except APINotFound:
            before = None
        note = (
            "the server does not support server-side apply (415 UnsupportedMediaType); "
            "applied with create-or-update"
        )
        if not self._apply_unsupported:
            try:
                after = await self.patch(
                    ref, name, dict(body), "apply", field_manager=field_manager, force=force
                )
            except APIError as error:
                if error.status.code != 415:
                    raise
                self._apply_unsupported = True
            else:
                return ApplyResult(after, _outcome(before, after), "server-side")
        if before is None:
            created = await self.create(ref, body)
            return ApplyResult(created, "created", "create-or-update", note)
        wanted = merge_patch(before, body)
        if wanted == before:
            return ApplyResult(before, "unchanged", "create-or-update", note)
        patch = dict(body)
        metadata = dict(patch.get("metadata") or {})
        metadata["resourceVersion"] = (before.get("metadata") or {}).get("resourceVersion")
        patch["metadata"] = metadata
        after = await self.patch(ref, name, patch, "merge", field_manager=field_manager)
        return ApplyResult(after, _outcome(before, after), "create-or-update", note)

    async def table(
        self,
        resource: APIResource,
        *,
        namespace: str | None = None,
        name: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Body:
        """The server-side ``Table`` of a list (or one object), as ``kubectl get`` asks for it.

        A server that does not make tables answers plain JSON; the caller then builds one."""
        ref = ResourceRef(resource.api_version, resource.kind, namespace)
        _, path = await self._path(ref, name)
        params = _selectors(label_selector, field_selector) if name is None else {}
        params["includeObject"] = "Object"
        answer: Body = await self.request("GET", path, params=params, accept=TABLE_ACCEPT)
        return answer


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``patch`` applied to (a copy of) ``target``."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _outcome(before: Body | None, after: Body) -> Literal["created", "configured", "unchanged"]:
    if before is None:
        return "created"
    old = (before.get("metadata") or {}).get("resourceVersion")
    new = (after.get("metadata") or {}).get("resourceVersion")
    return "unchanged" if old == new else "configured"


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name") or "")


def _with_type(body: Mapping[str, Any], ref: ResourceRef) -> Body:
    full = dict(body)
    full.setdefault("apiVersion", ref.api_version)
    full.setdefault("kind", ref.kind)
    return full


def _event(line: bytes) -> WatchEvent:
    try:
        data = json.loads(line)
    except ValueError:
        raise APIRetryableError(
            Status(0, "InvalidWatchEvent", f"a watch event is not JSON: {line[:200]!r}")
        ) from None
    kind, obj = data.get("type"), data.get("object") or {}
    if kind == "ERROR":
        status = Status.from_body(obj, int(obj.get("code") or 500), "watch failed")
        if status.code == 410:
            raise WatchExpired(status.message)
        raise _from_status(status, None)
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        raise APIRetryableError(Status(0, "InvalidWatchEvent", f"unknown watch event {kind!r}"))
    return WatchEvent(kind, obj)


def _error(code: int, text: str, retry_after: str | None) -> Exception:
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    fallback = text.strip()[:500] or f"HTTP {code}"
    return _from_status(Status.from_body(body, code, fallback), retry_after)


def _from_status(status: Status, retry_after: str | None) -> Exception:
    code = status.code
    if code == 404:
        return NotFoundError(status)
    if code == 409:
        return ConflictError(status)
    if code == 410:
        return WatchExpired(status.message)
    if code in RETRYABLE_CODES:
        delay = 1.0
        hint = retry_after or status.details.get("retryAfterSeconds")
        with contextlib.suppress(TypeError, ValueError):
            delay = float(hint) if hint is not None else delay
        return APIRetryableError(status, retry_after=delay)
    return APIError(status)


def _connection_error(method: str, url: str, error: BaseException) -> APIRetryableError:
    detail = str(error) or type(error).__name__
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        detail = "timed out"
    return APIRetryableError(
        Status(0, "ConnectionFailed", f"{method} {url}: {detail}"), retry_after=1.0
    )


def status_causes(causes: Sequence[Mapping[str, Any]]) -> list[str]:
    """``field: message`` for each cause of a 422, as kubectl lists them."""
    return [
        f"{cause.get('field')}: {cause.get('message')}"
        if cause.get("field")
        else str(cause.get("message"))
        for cause in causes
    ]
