"""The API's operations on stored objects, without HTTP: get, list, create, update, patch, delete.

Each operation reads from and writes to the :class:`~shoal.apiserver.aiostorage.AsyncStore`
with compare-and-swap on the revision it read, applies the rules of
:mod:`~shoal.apiserver.strategy` and the validation of :mod:`~shoal.apiserver.validating`, and
raises :class:`~shoal.apiserver.status.APIError` for anything a client gets wrong. Objects are
stored without ``metadata.resourceVersion``; it is the storage revision, set on the way out.

CustomResourceDefinitions are objects like any other, with side effects: storing one serves its
kind at once (and sets its ``Established``/``NamesAccepted`` conditions); deleting one deletes
its objects. Deletions hand dependents and namespaces to the
:class:`~shoal.apiserver.collecting.Collector`.
"""

from __future__ import annotations

import builtins
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shoal.apiserver import applying
from shoal.apiserver.aiostorage import AsyncStore
from shoal.apiserver.clusterip import (
    DEFAULT_SERVICE_CIDR,
    allocate_cluster_ip,
    is_service,
    keep_cluster_ip,
    used_ips,
)
from shoal.apiserver.patching import PatchError
from shoal.apiserver.records import (
    Entry,
    Event,
    collection_key,
    copy_json,
    item_text,
    object_key,
)
from shoal.apiserver.resources import CRD_RESOURCE, Registry, Resource
from shoal.apiserver.selectors import FieldSelector, LabelSelector
from shoal.apiserver.status import APIError
from shoal.apiserver.storage_errors import (
    OPTIMISTIC_LOCK_MESSAGE,
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StorageError,
)
from shoal.apiserver.strategy import (
    already_exists,
    bad_request,
    check_finalizers,
    conflict,
    invalid,
    not_found,
    now_rfc3339,
    pod_deletion_grace,
    prepare_create,
    prepare_status_update,
    prepare_update,
    spec_changed,
)
from shoal.apiserver.validating import FieldValidation, validate

__all__ = ["DeleteOptions", "ListResult", "ObjectService", "Propagation", "WriteOptions"]

Body = dict[str, Any]
Propagation = Literal["Background", "Foreground", "Orphan"]

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NAMESPACE_FINALIZER = "kubernetes"
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass(frozen=True, slots=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: FieldValidation = "Warn"
    manager: str = "unknown"


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    dry_run: bool = False
    propagation: Propagation = "Background"
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    grace_period_seconds: int | None = None
    """``gracePeriodSeconds``: how long a Pod's node may take to stop it (None: the pod's own)."""


@dataclass(slots=True)
class ListResult:
    items: list[Body]
    revision: int
    continue_token: str | None = None


Manage = Callable[[Mapping[str, Any] | None, Body], Body]
"""How a write records ``metadata.managedFields``: ``(old object or None, new object)`` to the
new object with its managed fields."""


@dataclass(slots=True)
class WriteResult:
    object: Body
    warnings: list[str] = field(default_factory=list)
    created: bool = False
    stored: str | None = None
    """The JSON text stored for ``object`` (when this write stored one): answers splice the
    revision into it instead of encoding ``object`` again."""


def storage_error(error: StorageError, resource: Resource, name: str = "") -> APIError:
    """A storage error as the Status the API answers with."""
    if isinstance(error, NotFoundError):
        return not_found(resource, name)
    if isinstance(error, AlreadyExistsError):
        return already_exists(resource, name)
    if isinstance(error, ConflictError):
        return conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)
    return APIError(error.reason, str(error))


_NAMESPACE_PREFIX = collection_key("", "namespaces")


class ObjectService:
    """Every object operation of the API server (see the module docstring)."""

    def __init__(self, store: AsyncStore, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.crds: dict[str, Body] = {}
        """Stored CustomResourceDefinitions by name (their schemas validate their objects)."""
        self.on_delete: Callable[[], None] = lambda: None
        """Called after every deletion (the collector's wake-up)."""
        self.service_cidr = DEFAULT_SERVICE_CIDR
        """Where Services' cluster IPs come from (see :mod:`~shoal.apiserver.clusterip`)."""
        self._allocating: set[str] = set()
        """Cluster IPs chosen by creates still being written (two creates never share one)."""
        self._namespaces: dict[str, bool] = {}
        """Namespaces known to exist, with whether they are terminating: every namespaced
        create checks its namespace, and this spares the read. Entries go when a commit touches
        the namespace (the store's observers run before any writer is answered)."""
        store.observers.append(self._forget_namespaces)

    # -- helpers ----------------------------------------------------------------------------

    def key(self, resource: Resource, name: str, namespace: str | None) -> str:
        return object_key(
            resource.storage_group,
            resource.plural,
            name,
            namespace if resource.namespaced else None,
        )

    def prefix(self, resource: Resource, namespace: str | None) -> str:
        return collection_key(
            resource.storage_group, resource.plural, namespace if resource.namespaced else None
        )

    @staticmethod
    def output(resource: Resource, value: Body, revision: int) -> Body:
        """An object as clients see it: the request's apiVersion, the revision as resourceVersion."""
        value["apiVersion"] = resource.api_version
        value.setdefault("kind", resource.kind)
        value.setdefault("metadata", {})["resourceVersion"] = str(revision)
        return value

    def crd_for(self, resource: Resource) -> Body | None:
        return self.crds.get(f"{resource.plural}.{resource.group}")

    def resource_of(self, obj: Mapping[str, Any]) -> Resource | None:
        """The served resource of a stored object (by its apiVersion and kind)."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return None
        return self.registry.for_kind(api_version, kind)

    # -- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the stored CRDs, and make the namespaces every cluster has."""
        crd_prefix = self.prefix(CRD_RESOURCE, None)
        page = await self.store.list(crd_prefix)
        for entry in page.entries:
            crd = entry.value
            self.crds[crd["metadata"]["name"]] = crd
            self.registry.add_crd(crd)
        namespaces = self.registry.lookup("", "v1", "namespaces")
        assert namespaces is not None
        for name in DEFAULT_NAMESPACES:
            try:
                await self.store.get(self.key(namespaces, name, None))
            except NotFoundError:
                body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                await self.create(namespaces, None, body, WriteOptions(manager="shoal-apiserver"))

    # -- reads ------------------------------------------------------------------------------

    async def get_entry(self, resource: Resource, namespace: str | None, name: str) -> Entry:
        try:
            return self.store.get_now(self.key(resource, name, namespace))
        except NotFoundError:
            raise not_found(resource, name) from None
        except StorageError as error:
            raise storage_error(error, resource, name) from None

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Body:
        entry = await self.get_entry(resource, namespace, name)
        return self.output(resource, entry.value, entry.revision)

    async def list(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        revision: int | None = None,
    ) -> ListResult:
        """One page of matching objects; pages of a list share its revision (a snapshot)."""
        prefix = self.prefix(resource, namespace)
        items: list[Body] = []
        token = continue_token
        at = None if token is not None else revision
        snapshot = None
        try:
            while True:
                wanted = limit - len(items) if limit else None
                page = await self.store.list(
                    prefix, limit=wanted, continue_token=token, revision=at
                )
                snapshot = page.revision
                for entry in page.entries:
                    value = entry.value
                    if labels is not None and not labels.matches(
                        value.get("metadata", {}).get("labels")
                    ):
                        continue
                    if fields is not None and not fields.matches(value):
                        continue
                    items.append(self.output(resource, value, entry.revision))
                token = page.continue_token
                if token is None or not limit or len(items) >= limit:
                    break
                at = None
        except StorageError as error:
            raise storage_error(error, resource) from None
        return ListResult(items, snapshot, token)

    async def list_texts(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        revision: int | None = None,
    ) -> tuple[builtins.list[str], int, str | None]:
        """Like :meth:`list` without selectors, with each item as the JSON text clients see,
        spliced from the stored text where it can be (see
        :func:`~shoal.apiserver.records.item_text`): a list answer costs no decode and no
        re-encode of its items. Returns (texts, revision, continue token)."""
        try:
            page = await self.store.list(
                self.prefix(resource, namespace),
                limit=limit,
                continue_token=continue_token,
                revision=None if continue_token is not None else revision,
            )
        except StorageError as error:
            raise storage_error(error, resource) from None
        api_version = resource.api_version
        texts = []
        for entry in page.entries:
            text = item_text(entry.raw, entry.revision, api_version)
            if text is None:
                obj = self.output(resource, entry.value, entry.revision)
                text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
            texts.append(text)
        return texts, page.revision, page.continue_token

    async def all_entries(self, prefix: str = "/registry/") -> builtins.list[Entry]:
        """Every stored object under ``prefix`` (all of them by default), read page by page."""
        entries: builtins.list[Entry] = []
        token = None
        while True:
            page = await self.store.list(prefix, limit=1000, continue_token=token)
            entries.extend(page.entries)
            token = page.continue_token
            if token is None:
                return entries

    # -- writes -----------------------------------------------------------------------------

    def _forget_namespaces(self, events: builtins.list[Event]) -> None:
        for event in events:
            if event.key.startswith(_NAMESPACE_PREFIX):
                self._namespaces.pop(event.key[len(_NAMESPACE_PREFIX) :], None)

    async def _check_namespace(self, namespace: str | None) -> None:
        namespaces = self.registry.lookup("", "v1", "namespaces")
        assert namespaces is not None
        if namespace is None:
            return
        terminating = self._namespaces.get(namespace)
        if terminating is None:
            try:
                entry = self.store.get_now(self.key(namespaces, namespace, None))
            except NotFoundError:
                raise not_found(namespaces, namespace) from None
            # No await between the read and this: no commit's observer can run in between.
            terminating = bool(entry.value.get("metadata", {}).get("deletionTimestamp"))
            self._namespaces[namespace] = terminating
        if terminating:
            raise APIError(
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
                name=namespace,
                kind="namespaces",
            )

    def record_update(
        self, resource: Resource, options: WriteOptions, subresource: str | None = None
    ) -> Manage:
        """The managed-fields recorder of an ordinary write (create, PUT, patch): an ``Update``
        entry for ``options.manager``, with the kind's list types (see
        :func:`~shoal.apiserver.applying.record_update`)."""

        def manage(old: Mapping[str, Any] | None, new: Body) -> Body:
            try:
                return applying.record_update(
                    old,
                    new,
                    options.manager,
                    now_rfc3339(),
                    subresource=subresource,
                    kind=resource.model,
                    status_subresource=resource.status_subresource,
                    owned=True,  # every caller passes the object it is about to store
                )
            except PatchError as error:
                raise error.to_api_error() from None

        return manage

    async def create(
        self,
        resource: Resource,
        namespace: str | None,
        body: Body,
        options: WriteOptions,
        *,
        manage: Manage | None = None,
        owned: bool = False,
    ) -> WriteResult:
        """POST (and the create of a server-side apply, whose ``manage`` keeps the managed
        fields the apply computed). ``body`` is left as it was unless ``owned`` says the caller
        gives it up (the request's own parsed body), which spares a copy."""
        now = now_rfc3339()
        obj = prepare_create(resource, body, namespace=namespace, now=now, owned=owned)
        name = obj["metadata"].get("name")
        checked = validate(
            resource, obj, options.field_validation, self.crd_for(resource), owned=True
        )
        obj = checked.body
        if resource.namespaced:
            await self._check_namespace(namespace)
        allocated: str | None = None
        if is_service(resource) and not options.dry_run:
            services = await self.all_entries(collection_key("", "services"))
            used = used_ips(entry.value for entry in services) | self._allocating
            allocated = allocate_cluster_ip(resource, obj, used, self.service_cidr)
            if allocated is not None:
                self._allocating.add(allocated)
        if resource.kind == "Namespace" and not resource.group:
            obj.setdefault("spec", {}).setdefault("finalizers", [NAMESPACE_FINALIZER])
            obj["status"] = {"phase": "Active"}
        if resource is CRD_RESOURCE or resource.kind == "CustomResourceDefinition":
            obj["status"] = self._crd_status(obj)
        obj = (manage or self.record_update(resource, options))(None, obj)
        obj["metadata"].pop("resourceVersion", None)
        key = self.key(resource, str(name), namespace)
        if options.dry_run:
            try:
                await self.store.get(key)
            except NotFoundError:
                return WriteResult(self.output(resource, obj, 0), checked.warnings, True)
            raise already_exists(resource, str(name))
        try:
            entry = await self.store.create(key, obj)
        except StorageError as error:
            raise storage_error(error, resource, str(name)) from None
        finally:
            self._allocating.discard(allocated or "")
        if resource.kind == "CustomResourceDefinition" and resource.group == CRD_RESOURCE.group:
            self._serve_crd(copy_json(obj))
        # ``obj`` is what was stored (``entry.raw`` is its JSON text): no need to decode that.
        return WriteResult(
            self.output(resource, obj, entry.revision), checked.warnings, True, entry.raw
        )

    def _crd_status(self, crd: Mapping[str, Any]) -> Body:
        spec = crd.get("spec", {})
        names = dict(spec.get("names", {}))
        names.setdefault("singular", str(names.get("kind", "")).lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        now = now_rfc3339()
        conditions = [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ]
        stored = [v.get("name") for v in spec.get("versions", []) if v.get("storage")]
        return {"conditions": conditions, "acceptedNames": names, "storedVersions": stored}

    def _serve_crd(self, crd: Body) -> None:
        name = crd["metadata"]["name"]
        self.registry.remove_crd(name)
        self.crds[name] = crd
        self.registry.add_crd(crd)

    async def update(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Body,
        options: WriteOptions,
        *,
        subresource: str | None = None,
        entry: Entry | None = None,
        owned: bool = False,
    ) -> WriteResult:
        """PUT: replace the object (or its status) if ``metadata.resourceVersion`` is current.
        ``owned`` as for :meth:`create`."""
        if entry is None:
            entry = await self.get_entry(resource, namespace, name)
        given = (
            (body.get("metadata") or {}).get("resourceVersion")
            if isinstance(body.get("metadata"), dict)
            else None
        )
        custom = resource.model is None or resource.model.INFO.custom
        if given in (None, "") and custom and subresource is None:
            # Custom resources never update unconditionally (AllowUnconditionalUpdate false).
            raise invalid(
                resource,
                name,
                [
                    (
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if given not in (None, ""):
            if not isinstance(given, str) or not given.isdigit():
                raise bad_request(f"invalid resourceVersion {given!r}: must be a storage revision")
            if int(given) != entry.revision:
                raise conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)
        return await self._replace(
            resource, namespace, name, entry, body, options, subresource, owned=owned
        )

    async def _replace(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        entry: Entry,
        body: Body,
        options: WriteOptions,
        subresource: str | None,
        manage: Manage | None = None,
        *,
        owned: bool = False,
    ) -> WriteResult:
        old = entry.value
        for key in ("apiVersion", "kind"):
            value = body.get(key)
            expected = resource.api_version if key == "apiVersion" else resource.kind
            if value not in (None, expected) and not (
                key == "apiVersion" and value == old.get("apiVersion")
            ):
                raise bad_request(
                    f"the {key} in the data ({value}) does not match the expected {key} "
                    f"({expected})"
                )
        if subresource == "status":
            if not resource.status_subresource:
                raise not_found(resource, f"{name}/status")
            obj = prepare_status_update(old, body)
        else:
            obj = prepare_update(resource, old, body, owned=owned)
            if is_service(resource):
                keep_cluster_ip(resource, old, obj)
        checked = validate(
            resource, obj, options.field_validation, self.crd_for(resource), owned=True
        )
        obj = checked.body
        check_finalizers(resource, old, obj)
        # The model may have filled in defaults: keep generation honest after normalization.
        old_generation = int(old.get("metadata", {}).get("generation") or 0)
        if subresource == "status" or not spec_changed(resource, old, obj):
            obj["metadata"]["generation"] = old_generation or 1
        else:
            obj["metadata"]["generation"] = old_generation + 1
        obj["metadata"].pop("resourceVersion", None)
        obj = (manage or self.record_update(resource, options, subresource))(old, obj)
        obj["metadata"].pop("resourceVersion", None)
        if _same_but_version(obj, old) and _canonical(obj) == _canonical(old):
            # Neither the object nor its managed fields changed (a no-op write or apply): no new
            # revision.
            return WriteResult(self.output(resource, old, entry.revision), checked.warnings)
        key = self.key(resource, name, namespace)
        meta = obj["metadata"]
        finishing = bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")
        if resource.kind == "Pod" and not resource.group:
            # A pod in its grace period goes when its node deletes it with grace 0, not on update.
            finishing = finishing and not meta.get("deletionGracePeriodSeconds")
        if resource.kind == "Namespace" and not resource.group:
            finishing = finishing and not (obj.get("spec") or {}).get("finalizers")
        if options.dry_run:
            return WriteResult(self.output(resource, obj, entry.revision), checked.warnings)
        try:
            if finishing:
                # The last finalizer is gone from an object being deleted: it goes now.
                last = await self.store.update(key, obj, entry.revision)
                done = await self.store.delete(key, last.revision)
                self.deleted(resource, obj)
                return WriteResult(self.output(resource, obj, done.revision), checked.warnings)
            stored = await self.store.update(key, obj, entry.revision)
        except StorageError as error:
            raise storage_error(error, resource, name) from None
        if resource.kind == "CustomResourceDefinition" and resource.group == CRD_RESOURCE.group:
            self._serve_crd(obj)
        # ``obj`` is what was stored (``stored.raw`` is its JSON text): no need to decode that.
        return WriteResult(
            self.output(resource, obj, stored.revision), checked.warnings, stored=stored.raw
        )

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        apply: Callable[[Body], Body],
        options: WriteOptions,
        *,
        subresource: str | None = None,
    ) -> WriteResult:
        """PATCH: ``apply`` turns the current object into the new one; retried on a conflict
        with a concurrent writer (unless the patch itself names a resourceVersion)."""
        for _ in range(16):
            entry = await self.get_entry(resource, namespace, name)
            current = self.output(resource, entry.value, entry.revision)
            patched = apply(copy.deepcopy(current))
            if not isinstance(patched, dict):
                raise bad_request("the patched object is not a JSON object")
            metadata = patched.get("metadata")
            given = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
            if given not in (None, "", str(entry.revision)):
                raise conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)
            try:
                return await self._replace(
                    resource, namespace, name, entry, patched, options, subresource
                )
            except APIError as error:
                # The current resourceVersion comes with the object the patch was applied to:
                # only a patch that sets another one is a precondition. Otherwise a concurrent
                # write is retried on the new object (where a resourceVersion the patch did set
                # no longer matches, and the check above answers 409).
                if error.reason == "Conflict" and given in (None, "", str(entry.revision)):
                    continue
                raise
        raise conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)

    async def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        applied: Any,
        options: WriteOptions,
        *,
        force: bool = False,
        subresource: str | None = None,
    ) -> WriteResult:
        """Server-side apply (``application/apply-patch+yaml``) of the configuration ``applied``
        by field manager ``options.manager``: creates the object when it does not exist (the
        result's ``created``), else merges it in (:func:`~shoal.apiserver.applying.apply`).
        Conflicts with other managers are 409 unless ``force``; a ``metadata.resourceVersion``
        in the configuration is a precondition (409 when stale); an apply that changes nothing
        writes nothing. Retried on a conflict with a concurrent writer."""
        precondition = self._check_applied(resource, namespace, name, applied)
        for _ in range(16):
            try:
                entry: Entry | None = await self.get_entry(resource, namespace, name)
            except APIError as error:
                if error.reason != "NotFound":
                    raise
                entry = None
            if entry is None:
                if subresource is not None:
                    raise not_found(resource, name)  # no object to apply the status to
                if precondition is not None:
                    raise conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)  # nothing matches
                try:
                    return await self._apply_create(resource, namespace, applied, options, force)
                except APIError as error:
                    if error.reason == "AlreadyExists":
                        continue  # created meanwhile: apply to it
                    raise
            if precondition is not None and precondition != str(entry.revision):
                raise conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)
            live = self.output(resource, copy.deepcopy(entry.value), entry.revision)
            result = self._run_apply(resource, live, applied, options, force, subresource)
            merged = result.object

            def keep_applied(
                old: Mapping[str, Any] | None, new: Body, merged: Body = merged
            ) -> Body:
                managed = merged.get("metadata", {}).get("managedFields")
                if managed:
                    new["metadata"]["managedFields"] = copy.deepcopy(managed)
                else:
                    new["metadata"].pop("managedFields", None)
                return new

            try:
                return await self._replace(
                    resource, namespace, name, entry, merged, options, subresource, keep_applied
                )
            except APIError as error:
                if error.reason == "Conflict" and precondition is None:
                    continue
                raise
        raise conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)

    @staticmethod
    def _check_applied(
        resource: Resource, namespace: str | None, name: str, applied: Any
    ) -> str | None:
        """Refuse a configuration that names another object (400); its resourceVersion."""
        if not isinstance(applied, dict):
            raise bad_request(
                "an applied configuration must be an object with apiVersion, kind and metadata.name"
            )
        metadata = applied.get("metadata")
        if not isinstance(metadata, dict):
            raise bad_request("the applied configuration must set metadata.name")
        given_name = metadata.get("name")
        if given_name in (None, "") and metadata.get("generateName"):
            raise bad_request(
                "metadata.generateName is not supported by server-side apply: set metadata.name"
            )
        if given_name not in (None, "", name):
            raise bad_request(
                f"the name of the object ({given_name}) does not match the name on the URL ({name})"
            )
        if resource.namespaced and metadata.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        kind = applied.get("kind")
        if isinstance(kind, str) and kind and kind != resource.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )
        api_version = applied.get("apiVersion")
        if (
            isinstance(api_version, str)
            and api_version
            and api_version != resource.api_version
            and not (
                resource.model is not None and resource.model.INFO.accepts_api_version(api_version)
            )
        ):
            raise bad_request(
                f"the apiVersion in the data ({api_version}) does not match the expected "
                f"apiVersion ({resource.api_version})"
            )
        version = metadata.get("resourceVersion")
        if version in (None, ""):
            return None
        if not isinstance(version, str) or not version.isdigit():
            raise bad_request(f"invalid resourceVersion {version!r}: must be a storage revision")
        return version

    @staticmethod
    def _run_apply(
        resource: Resource,
        live: Body | None,
        applied: Body,
        options: WriteOptions,
        force: bool,
        subresource: str | None,
    ) -> applying.ApplyResult:
        try:
            return applying.apply(
                live,
                applied,
                options.manager,
                force=force,
                now=now_rfc3339(),
                subresource=subresource,
                kind=resource.model,
                status_subresource=resource.status_subresource,
            )
        except PatchError as error:
            raise error.to_api_error() from None

    async def _apply_create(
        self,
        resource: Resource,
        namespace: str | None,
        applied: Body,
        options: WriteOptions,
        force: bool,
    ) -> WriteResult:
        config = copy.deepcopy(applied)
        if resource.namespaced:
            config["metadata"]["namespace"] = namespace
        result = self._run_apply(resource, None, config, options, force, None)
        managed = copy.deepcopy(result.object.get("metadata", {}).get("managedFields"))

        def keep_applied(old: Mapping[str, Any] | None, new: Body) -> Body:
            if managed:
                new["metadata"]["managedFields"] = managed
            else:
                new["metadata"].pop("managedFields", None)
            return new

        return await self.create(resource, namespace, result.object, options, manage=keep_applied)

    # -- deletion ---------------------------------------------------------------------------

    def deleted(self, resource: Resource, obj: Mapping[str, Any]) -> None:
        if resource.kind == "CustomResourceDefinition" and resource.group == CRD_RESOURCE.group:
            self.crds.pop(obj["metadata"]["name"], None)
            self.registry.remove_crd(obj["metadata"]["name"])
        self.on_delete()

    async def delete(
        self, resource: Resource, namespace: str | None, name: str, options: DeleteOptions
    ) -> tuple[Body, bool]:
        """Delete an object: ``(object, gone)``; ``gone`` is False while finalizers hold it."""
        if resource.kind == "Namespace" and not resource.group and name in PROTECTED_NAMESPACES:
            raise APIError(
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                name=name,
                kind="namespaces",
            )
        for _ in range(16):
            entry = await self.get_entry(resource, namespace, name)
            meta = entry.value.get("metadata", {})
            if options.precondition_uid not in (None, meta.get("uid")):
                raise conflict(
                    resource,
                    name,
                    f"Precondition failed: UID in precondition: {options.precondition_uid}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if options.precondition_resource_version not in (None, str(entry.revision)):
                raise conflict(
                    resource,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{options.precondition_resource_version}, ResourceVersion in object meta: "
                    f"{entry.revision}",
                )
            try:
                return await self.delete_entry(resource, entry, options)
            except APIError as error:
                # A write landed between the read and the compare-and-swap (a controller's
                # status update): read again, as Kubernetes' store does; the preconditions
                # above answer 409 if the client asked for the version it saw.
                if error.reason != "Conflict":
                    raise
        raise conflict(resource, name, OPTIMISTIC_LOCK_MESSAGE)

    async def delete_entry(
        self, resource: Resource, entry: Entry, options: DeleteOptions
    ) -> tuple[Body, bool]:
        obj = entry.value
        meta = obj.setdefault("metadata", {})
        name = str(meta.get("name"))
        is_namespace = resource.kind == "Namespace" and not resource.group
        if options.propagation == "Orphan" and not options.dry_run:
            await self.orphan_dependents(str(meta.get("uid")))
        if resource.kind == "Pod" and not resource.group:
            grace, graceful = pod_deletion_grace(obj, options.grace_period_seconds)
            keep = grace > 0
            if graceful is not None:
                obj["metadata"] = meta = graceful
            elif not keep and meta.get("deletionGracePeriodSeconds") and meta.get("finalizers"):
                # Its node has stopped it: from now on the finalizers alone hold it.
                meta["deletionGracePeriodSeconds"] = 0
                keep = True
            if keep:
                # Kept until its node has stopped the containers (and deletes it with grace 0).
                if options.dry_run or (graceful is None and grace > 0):
                    return self.output(resource, obj, entry.revision), False
                try:
                    stored = await self.store.update(entry.key, obj, entry.revision)
                except StorageError as error:
                    raise storage_error(error, resource, name) from None
                return self.output(resource, stored.value, stored.revision), False
        finalizers = list(meta.get("finalizers") or [])
        if options.propagation == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        holds = bool(finalizers) or (
            is_namespace and bool((obj.get("spec") or {}).get("finalizers"))
        )
        is_crd = (
            resource.kind == "CustomResourceDefinition" and resource.group == CRD_RESOURCE.group
        )
        if is_crd and not options.dry_run:
            await self._delete_custom_objects(obj)
        if holds:
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return self.output(resource, obj, entry.revision), False
            meta.setdefault("deletionTimestamp", now_rfc3339())
            meta.setdefault("deletionGracePeriodSeconds", 0)
            if finalizers:
                meta["finalizers"] = finalizers
            if is_namespace:
                obj.setdefault("status", {})["phase"] = "Terminating"
            if options.dry_run:
                return self.output(resource, obj, entry.revision), False
            try:
                stored = await self.store.update(entry.key, obj, entry.revision)
            except StorageError as error:
                raise storage_error(error, resource, name) from None
            self.on_delete()
            return self.output(resource, stored.value, stored.revision), False
        if options.dry_run:
            return self.output(resource, obj, entry.revision), True
        try:
            done = await self.store.delete(entry.key, entry.revision)
        except StorageError as error:
            raise storage_error(error, resource, name) from None
        self.deleted(resource, obj)
        return self.output(resource, obj, done.revision), True

    async def _delete_custom_objects(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec", {})
        group, plural = spec.get("group"), spec.get("names", {}).get("plural")
        if not isinstance(group, str) or not isinstance(plural, str):
            return
        if any(
            r.model is not None and r.storage_group == group and r.plural == plural
            for r in self.registry
        ):
            return  # a CRD of one of shoal's own kinds: the model keeps serving them
        for entry in await self.all_entries(collection_key(group, plural)):
            try:
                await self.store.delete(entry.key, entry.revision)
            except (NotFoundError, ConflictError):
                continue
        self.on_delete()

    async def orphan_dependents(self, uid: str) -> None:
        """Remove the owner references to ``uid`` from every object (``propagationPolicy:
        Orphan``)."""
        for entry in await self.all_entries():
            value = entry.value
            refs = value.get("metadata", {}).get("ownerReferences") or []
            kept = [ref for ref in refs if ref.get("uid") != uid]
            if len(kept) == len(refs):
                continue
            if kept:
                value["metadata"]["ownerReferences"] = kept
            else:
                del value["metadata"]["ownerReferences"]
            try:
                await self.store.update(entry.key, value, entry.revision)
            except (NotFoundError, ConflictError):
                continue  # gone or changed meanwhile: the collector looks again

    async def delete_collection(
        self,
        resource: Resource,
        namespace: str | None,
        options: DeleteOptions,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> ListResult:
        listed = await self.list(resource, namespace, labels=labels, fields=fields)
        deleted = []
        for item in listed.items:
            meta = item["metadata"]
            try:
                obj, _ = await self.delete(resource, meta.get("namespace"), meta["name"], options)
            except APIError as error:
                if error.reason in ("NotFound", "Forbidden"):
                    continue
                raise
            deleted.append(obj)
        return ListResult(deleted, listed.revision)


def _same_but_version(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two objects are equal apart from ``metadata.resourceVersion``, by Python
    equality: unequal JSON data is never equal here, so only equal pairs need the stricter
    (and dearer) comparison of :func:`_canonical` texts (which tells ``1`` from ``true``)."""
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        if key == "metadata" and isinstance(value, dict) and isinstance(b[key], dict):
            other = b[key]
            keys = value.keys() | other.keys()
            if any(value.get(k) != other.get(k) for k in keys if k != "resourceVersion"):
                return False
        elif value != b[key]:
            return False
    return True


def _canonical(obj: Mapping[str, Any]) -> str:
    copied = dict(obj)
    metadata = dict(copied.get("metadata") or {})
    metadata.pop("resourceVersion", None)
    copied["metadata"] = metadata
    return json.dumps(copied, sort_keys=True)
