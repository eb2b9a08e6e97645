"""The HTTP client against a real shoal API server (in-process, TLS and token included), and the
kubeconfig loader."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.client import Informer, InformerSettings, ResourceRef, WatchEvent, WatchExpired
from shoal.client.http import (
    APIError,
    APIRetryableError,
    ConflictError,
    HTTPClient,
    NotFoundError,
    Status,
    UnknownResource,
)
from shoal.client.kubeconfig import KubeConfigError, find_kubeconfig, load_kubeconfig
from shoal.testing import LocalAPIServer, api_server

CM = ResourceRef("v1", "ConfigMap", "default")
LOADTESTS = ResourceRef("loadtest.shoal.dev/v1", "LoadTest", "default")
WAIT = 10.0


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": name},
    }


async def until(condition: Callable[[], bool], within: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def server(tmp_path: Path, _no_leaked_tasks: None) -> AsyncIterator[LocalAPIServer]:
    # Depending on the leak check makes it run after this fixture has stopped the server.
    async with api_server(data_dir=tmp_path / "data") as running:
        yield running


@pytest.fixture
async def api(server: LocalAPIServer) -> AsyncIterator[HTTPClient]:
    async with HTTPClient.from_kubeconfig(server.kubeconfig) as client:
        yield client


# -- kubeconfig ---------------------------------------------------------------------------------


async def test_the_servers_kubeconfig_gives_url_ca_token_and_namespace(
    server: LocalAPIServer,
) -> None:
    config = load_kubeconfig(server.kubeconfig)
    assert config.server == server.url
    assert config.token == server.token
    assert config.ca_data == server.ca_cert.read_bytes()
    assert config.namespace == "default"
    assert config.context == "shoal"
    assert config.headers == {"Authorization": f"Bearer {server.token}"}
    assert load_kubeconfig(server.kubeconfig, namespace="other").namespace == "other"


def test_kubeconfig_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("SHOAL_HOME", raising=False)
    assert find_kubeconfig() == home / ".kube" / "config"
    (home / ".shoal").mkdir(parents=True)
    (home / ".shoal" / "kubeconfig").write_text("{}")
    assert find_kubeconfig() == home / ".shoal" / "kubeconfig"
    shoal_home = tmp_path / "shoal-home"
    shoal_home.mkdir()
    (shoal_home / "kubeconfig").write_text("{}")
    monkeypatch.setenv("SHOAL_HOME", str(shoal_home))
    assert find_kubeconfig() == shoal_home / "kubeconfig"
    env = tmp_path / "env-config"
    env.write_text("{}")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{env}")
    assert find_kubeconfig() == env
    assert find_kubeconfig(tmp_path / "given") == tmp_path / "given"


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def _config(**user: Any) -> dict[str, Any]:
    return {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }


def test_kubeconfig_errors_name_the_file_and_what_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(KubeConfigError, match=f"{missing}: no such kubeconfig"):
        load_kubeconfig(missing)
    no_context = _write(tmp_path / "a", {**_config(), "current-context": ""})
    with pytest.raises(KubeConfigError, match=f"{no_context}: no current-context"):
        load_kubeconfig(no_context)
    with pytest.raises(KubeConfigError, match="no context named 'other' in contexts"):
        load_kubeconfig(_write(tmp_path / "b", _config()), context="other")
    no_server = _config()
    no_server["clusters"][0]["cluster"] = {}
    with pytest.raises(KubeConfigError, match="cluster 'c' has no server URL"):
        load_kubeconfig(_write(tmp_path / "c", no_server))
    half = _write(tmp_path / "d", _config(**{"client-certificate-data": "YQ=="}))
    with pytest.raises(KubeConfigError, match=r"no client-key\(-data\)"):
        load_kubeconfig(half)
    bad_file = _write(tmp_path / "e", _config(tokenFile="token-file"))
    with pytest.raises(KubeConfigError, match=r"tokenFile .*token-file"):
        load_kubeconfig(bad_file)


def test_kubeconfig_reads_relative_files_and_client_certificates(tmp_path: Path) -> None:
    (tmp_path / "token-file").write_text("secret\n")
    (tmp_path / "ca.pem").write_bytes(b"CA")
    config = _config(
        tokenFile="token-file",
        **{
            "client-certificate-data": base64.b64encode(b"CERT").decode(),
            "client-key": str(tmp_path / "key.pem"),
        },
    )
    config["clusters"][0]["cluster"]["certificate-authority"] = "ca.pem"
    (tmp_path / "key.pem").write_bytes(b"KEY")
    loaded = load_kubeconfig(_write(tmp_path / "config", config))
    assert (loaded.token, loaded.ca_data) == ("secret", b"CA")
    assert (loaded.client_cert_data, loaded.client_key_data) == (b"CERT", b"KEY")


# -- the ObjectAPI calls --------------------------------------------------------------------------


async def test_create_get_update_status_and_delete(api: HTTPClient) -> None:
    created = await api.create(CM, configmap("a"))
    assert created["metadata"]["uid"]
    got = await api.get(CM, "a")
    assert got["data"] == {"k": "a"}
    got["data"]["k"] = "changed"
    updated = await api.update(CM, got)
    assert updated["data"] == {"k": "changed"}
    assert int(updated["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"])
    # A stale resourceVersion: 409 Conflict, with the Status.
    with pytest.raises(ConflictError) as conflict:
        await api.update(CM, got)
    assert (conflict.value.status.code, conflict.value.status.reason) == (409, "Conflict")
    with pytest.raises(ConflictError) as exists:
        await api.create(CM, configmap("a"))
    assert exists.value.status.reason == "AlreadyExists"
    await api.delete(CM, "a")
    with pytest.raises(NotFoundError) as missing:
        await api.get(CM, "a")
    assert missing.value.status.reason == "NotFound"
    assert missing.value.status.message == 'configmaps "a" not found'


async def test_status_subresource_and_generation(api: HTTPClient) -> None:
    loadtest = {
        "apiVersion": "loadtest.shoal.dev/v1",
        "kind": "LoadTest",
        "metadata": {"name": "lt"},
        "spec": {"service": "web", "requestPerSecond": "10k", "tests": [{"test": ["/a"]}]},
    }
    created = await api.create(LOADTESTS, loadtest)
    condition = {
        "type": "Succeeded",
        "status": "True",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    created["status"] = {"conditions": [condition]}
    updated = await api.update_status(LOADTESTS, created)
    assert updated["status"]["conditions"][0]["type"] == "Succeeded"
    assert updated["metadata"]["generation"] == 1


async def test_invalid_objects_carry_the_status_causes(api: HTTPClient) -> None:
    bad = {
        "apiVersion": "loadtest.shoal.dev/v1",
        "kind": "LoadTest",
        "metadata": {"name": "bad"},
        "spec": {"service": "web", "requestPerSecond": "-3", "tests": [{"test": ["/a"]}]},
    }
    with pytest.raises(APIError) as error:
        await api.create(LOADTESTS, bad)
    status = error.value.status
    assert (status.code, status.reason) == (422, "Invalid")
    assert status.causes
    assert any("spec" in str(cause.get("field")) for cause in status.causes)


async def test_namespaced_objects_default_to_the_kubeconfig_namespace(
    api: HTTPClient, server: LocalAPIServer
) -> None:
    nowhere = ResourceRef("v1", "ConfigMap")
    await api.create(nowhere, configmap("here"))
    assert (await api.get(CM, "here"))["metadata"]["namespace"] == "default"
    await api.create(ResourceRef("v1", "Namespace"), {"metadata": {"name": "other"}})
    async with HTTPClient.from_kubeconfig(server.kubeconfig, namespace="other") as other:
        await other.create(nowhere, configmap("there"))
    got = await api.get(ResourceRef("v1", "ConfigMap", "other"), "there")
    assert got["metadata"]["namespace"] == "other"
    everywhere = await api.list(nowhere)
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere.items} == {
        ("default", "here"),
        ("other", "there"),
    }


async def test_list_pages_selectors_and_item_kinds(server: LocalAPIServer) -> None:
    async with HTTPClient.from_kubeconfig(server.kubeconfig, page_size=2) as api:
        for index in range(5):
            await api.create(CM, configmap(f"c{index}", tier="a" if index % 2 else "b"))
        everything = await api.list(CM)
        assert [i["metadata"]["name"] for i in everything.items] == [f"c{i}" for i in range(5)]
        assert all(i["kind"] == "ConfigMap" and i["apiVersion"] == "v1" for i in everything.items)
        assert int(everything.resource_version) >= 5
        labelled = await api.list(CM, label_selector="tier=a")
        assert [i["metadata"]["name"] for i in labelled.items] == ["c1", "c3"]
        named = await api.list(CM, field_selector="metadata.name=c4")
        assert [i["metadata"]["name"] for i in named.items] == ["c4"]
        with pytest.raises(APIError) as error:
            await api.list(CM, field_selector="spec.nothing=1")
        assert error.value.status.code == 400


async def test_patch_kinds(api: HTTPClient) -> None:
    await api.create(CM, configmap("p"))
    merged = await api.patch(CM, "p", {"data": {"extra": "1"}}, "merge")
    assert merged["data"] == {"k": "p", "extra": "1"}
    replaced = await api.patch(
        CM, "p", [{"op": "replace", "path": "/data/extra", "value": "2"}], "json"
    )
    assert replaced["data"]["extra"] == "2"
    strategic = await api.patch(CM, "p", {"metadata": {"labels": {"x": "y"}}}, "strategic")
    assert strategic["metadata"]["labels"] == {"x": "y"}


async def test_delete_with_a_propagation_policy(api: HTTPClient) -> None:
    owner = await api.create(CM, configmap("owner"))
    dependent = configmap("dependent")
    dependent["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    await api.create(CM, dependent)
    await api.delete(CM, "owner", propagation_policy="Orphan")
    with pytest.raises(NotFoundError):
        await api.get(CM, "owner")
    kept = await api.get(CM, "dependent")
    assert kept["metadata"].get("ownerReferences") in (None, [])


async def test_apply_creates_configures_and_reports_which_path_ran(api: HTTPClient) -> None:
    first = await api.apply(configmap("applied"))
    assert first.outcome == "created"
    assert first.method in ("server-side", "create-or-update")
    # The note explains a fallback, and only a fallback.
    assert bool(first.note) == (first.method == "create-or-update")
    if first.method == "create-or-update":
        assert "415" in first.note
    again = await api.apply(configmap("applied"))
    assert again.outcome == "unchanged"
    changed = configmap("applied")
    changed["data"] = {"k": "new"}
    third = await api.apply(changed)
    assert third.outcome == "configured"
    assert (await api.get(CM, "applied"))["data"] == {"k": "new"}


async def test_discovery_resolves_names_like_kubectl(api: HTTPClient) -> None:
    for name in ("configmaps", "configmap", "cm", "ConfigMap"):
        assert (await api.find_resource(name)).name == "configmaps"
    deployments = await api.find_resource("deployments.apps")
    assert (deployments.group, deployments.qualified_kind) == ("apps", "deployment.apps")
    assert (await api.find_resource("deploy")).kind == "Deployment"
    assert (await api.find_resource("deployments.v1.apps")).api_version == "apps/v1"
    loadtests = await api.find_resource("loadtests.loadtest.shoal.dev")
    assert loadtests.api_version == "loadtest.shoal.dev/v1"
    with pytest.raises(UnknownResource, match='doesn\'t have a resource type "gadgets"'):
        await api.find_resource("gadgets")
    with pytest.raises(UnknownResource, match='no matches for kind "Gadget"'):
        await api.get(ResourceRef("example.com/v1", "Gadget", "default"), "g")


async def test_a_crd_created_after_discovery_was_cached_is_found(api: HTTPClient) -> None:
    assert (await api.find_resource("cm")).name == "configmaps"  # caches discovery
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "gadgets",
                "singular": "gadget",
                "kind": "Gadget",
                "listKind": "GadgetList",
                "shortNames": ["gd"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    await api.create(ResourceRef("apiextensions.k8s.io/v1", "CustomResourceDefinition"), crd)
    assert (await api.find_resource("gd")).kind == "Gadget"
    gadgets = ResourceRef("example.com/v1", "Gadget", "default")
    await api.create(gadgets, {"metadata": {"name": "g1"}, "spec": {"size": 2}})
    assert (await api.get(gadgets, "g1"))["spec"] == {"size": 2}


# -- watches ------------------------------------------------------------------------------------


async def _collect(
    events: AsyncIterator[WatchEvent], count: int, into: list[WatchEvent]
) -> list[WatchEvent]:
    async for event in events:
        if event.type != "BOOKMARK":
            into.append(event)
        if len(into) == count:
            break
    return into


async def test_watch_streams_changes_after_a_revision(api: HTTPClient) -> None:
    start = await api.list(CM)
    await api.create(CM, configmap("w"))
    await api.patch(CM, "w", {"data": {"k": "2"}}, "merge")
    await api.delete(CM, "w")
    got: list[WatchEvent] = []
    events = api.watch(CM, start.resource_version)
    try:
        async with asyncio.timeout(WAIT):
            await _collect(events, 3, got)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert [(e.type, e.object["metadata"]["name"]) for e in got] == [
        ("ADDED", "w"),
        ("MODIFIED", "w"),
        ("DELETED", "w"),
    ]
    assert got[1].object["data"] == {"k": "2"}
    assert int(got[2].resource_version) > int(got[0].resource_version)


async def test_watch_ends_when_the_server_closes_it(api: HTTPClient) -> None:
    start = await api.list(CM)
    got: list[WatchEvent] = []
    async with asyncio.timeout(WAIT):
        async for event in api.watch(CM, start.resource_version, timeout_seconds=1):
            got.append(event)
    assert [e.type for e in got if e.type != "BOOKMARK"] == []


async def test_watch_from_a_compacted_revision_raises_watch_expired(tmp_path: Path) -> None:
    async with (
        api_server(data_dir=tmp_path, storage={"history_revisions": 2}) as server,
        HTTPClient.from_kubeconfig(server.kubeconfig) as api,
    ):
        first = await api.create(CM, configmap("a"))
        for index in range(5):
            await api.create(CM, configmap(f"n{index}"))
        assert server.running is not None
        await server.running.service.store.compact()
        events = api.watch(CM, first["metadata"]["resourceVersion"])
        async with asyncio.timeout(WAIT):
            with pytest.raises(WatchExpired, match="too old resource version"):
                await anext(events)


class GatedClient(HTTPClient):
    """The HTTP client, with a gate a test closes to hold the next watch back."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0

    async def watch(
        self, ref: ResourceRef, resource_version: str, **options: Any
    ) -> AsyncIterator[WatchEvent]:
        if not self.gate.is_set():
            self.held += 1
            await self.gate.wait()
        async for event in super().watch(ref, resource_version, **options):
            yield event


async def test_informer_lists_watches_reconnects_and_relists_after_compaction(
    tmp_path: Path,
) -> None:
    storage = {"history_revisions": 2, "bookmark_interval": None}
    async with api_server(data_dir=tmp_path, storage=storage) as server:
        config = load_kubeconfig(server.kubeconfig)
        async with GatedClient(config, watch_timeout=1) as api:
            await api.create(CM, configmap("before"))
            informer = Informer(api, CM, settings=InformerSettings(resync_period=None))
            seen: list[str] = []
            informer.add_handler(seen.append)
            async with asyncio.TaskGroup() as group:
                group.create_task(informer.run())
                async with asyncio.timeout(WAIT):
                    await informer.synced.wait()
                assert list(informer.cache) == ["default/before"]
                await api.create(CM, configmap("watched"))
                await until(lambda: "default/watched" in informer.cache)
                # The server closes each watch after 1 s; the informer watches again from its
                # revision (no new list). Hold that watch back while history is compacted.
                api.gate.clear()
                await until(lambda: api.held == 1)
                assert informer.lists == 1
                for index in range(4):
                    await api.create(CM, configmap(f"during{index}"))
                await api.delete(CM, "before")
                assert server.running is not None
                await server.running.service.store.compact()
                api.gate.set()
                # 410 Expired: the informer lists again and catches up.
                await until(lambda: informer.lists == 2)
                await until(lambda: "default/during3" in informer.cache)
                assert "default/before" not in informer.cache
                await api.create(CM, configmap("after"))
                await until(lambda: "default/after" in informer.cache)
                informer.stop()
    assert sorted(informer.cache) == [
        "default/after",
        *(f"default/during{i}" for i in range(4)),
        "default/watched",
    ]
    assert seen[:2] == ["default/before", "default/watched"]
    assert "default/before" in seen[2:]  # reported again when the relist found it gone


# -- transport ----------------------------------------------------------------------------------


async def test_tls_is_verified_against_the_kubeconfigs_ca(
    server: LocalAPIServer, tmp_path: Path
) -> None:
    config = yaml.safe_load(server.kubeconfig.read_text())
    other = tmp_path / "other-data"
    async with api_server(data_dir=other) as stranger:
        config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
            stranger.ca_cert.read_bytes()
        ).decode()
    wrong = _write(tmp_path / "wrong-ca", config)
    async with HTTPClient.from_kubeconfig(wrong) as api:
        with pytest.raises(APIRetryableError, match="certificate verify failed") as error:
            await api.list(CM)
    assert error.value.status.reason == "ConnectionFailed"


async def test_a_wrong_token_is_refused_with_401(server: LocalAPIServer, tmp_path: Path) -> None:
    config = yaml.safe_load(server.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    async with HTTPClient.from_kubeconfig(_write(tmp_path / "bad-token", config)) as api:
        with pytest.raises(APIError) as error:
            await api.list(CM)
    assert (error.value.status.code, error.value.status.reason) == (401, "Unauthorized")


async def test_a_stopped_server_is_a_retryable_connection_error(tmp_path: Path) -> None:
    async with api_server(data_dir=tmp_path) as server:
        kubeconfig = server.kubeconfig
    async with HTTPClient.from_kubeconfig(kubeconfig) as api:
        with pytest.raises(APIRetryableError) as error:
            await api.list(CM)
    assert error.value.status.code == 0


class NoServerSideApply(HTTPClient):
    """A client whose apply PATCHes get the 415 a server without server-side apply answers
    (shoal's server serves it now; real older or restricted servers may not)."""

    async def patch(
        self, ref: ResourceRef, name: str, body: Any, patch_type: Any = "merge", **options: Any
    ) -> dict[str, Any]:
        if patch_type == "apply":
            self.refused += 1
            raise APIError(Status(415, "UnsupportedMediaType", "apply-patch+yaml not supported"))
        return await super().patch(ref, name, body, patch_type, **options)

    refused = 0


async def test_apply_falls_back_to_create_or_update_on_415(server: LocalAPIServer) -> None:
    async with NoServerSideApply(load_kubeconfig(server.kubeconfig)) as api:
        first = await api.apply(configmap("fallback"))
        assert (first.outcome, first.method) == ("created", "create-or-update")
        assert "415" in first.note
        assert (await api.apply(configmap("fallback"))).outcome == "unchanged"
        changed = configmap("fallback")
        changed["data"] = {"k": "new", "more": "x"}
        third = await api.apply(changed)
        assert (third.outcome, third.method) == ("configured", "create-or-update")
        assert (await api.get(CM, "fallback"))["data"] == {"k": "new", "more": "x"}
        assert api.refused == 1  # asked once, then remembered
