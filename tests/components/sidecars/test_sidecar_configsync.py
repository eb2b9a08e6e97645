# ruff: noqa: SIM117 -- the client is opened once the server is up, on purpose
"""config-sync: the payload and the kubelet-style atomic writer (no sockets), and a ConfigMap
change reaching the app through a real API server (``shoal.testing.api_server``)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.client import HTTPClient, ResourceRef
from shoal.components.sidecars.configsync import (
    ConfigSync,
    ConfigSyncConfig,
    ConfigSyncSettings,
    PayloadError,
    SyncedDirectory,
    payload,
)
from shoal.testing import api_server
from tests.components.http_app import App

WAIT = 10.0
CONFIGMAPS = ResourceRef("v1", "ConfigMap", "default")


def visible(directory: Path) -> dict[str, bytes]:
    """What an app sees: the non-hidden names, read through their symlinks."""
    return {
        entry.name: entry.read_bytes()
        for entry in directory.iterdir()
        if not entry.name.startswith("..")
    }


def test_payload() -> None:
    files = payload({"app.conf": "a=1\n"}, {"logo.png": base64.b64encode(b"\x89PNG").decode()})
    assert files == {"app.conf": b"a=1\n", "logo.png": b"\x89PNG"}
    assert payload(None, None) == {}
    for data, binary, message in [
        ({"../etc": "x"}, None, "a file name must consist"),
        ({"..data": "x"}, None, "may not be"),
        ({"a/b": "x"}, None, "a file name must consist"),
        ({"k": "x"}, {"k": "eA=="}, "in both data and binaryData"),
        (None, {"k": "%%%"}, "not base64"),
    ]:
        with pytest.raises(PayloadError, match=message):
            payload(data, binary)


def test_atomic_writer_layout(tmp_path: Path) -> None:
    directory = SyncedDirectory(tmp_path / "config")
    assert directory.current() is None
    assert directory.write({"a": b"1", "b": b"2"})
    root = tmp_path / "config"
    assert visible(root) == {"a": b"1", "b": b"2"}
    assert os.readlink(root / "a") == "..data/a"
    first = os.readlink(root / "..data")
    assert first.startswith("..20")
    assert not directory.write({"a": b"1", "b": b"2"})  # unchanged: nothing happens
    assert directory.write({"a": b"one", "c": b"3"})
    assert visible(root) == {"a": b"one", "c": b"3"}  # b's link is gone
    hidden = sorted(e.name for e in root.iterdir() if e.name.startswith(".."))
    assert hidden == sorted(["..data", os.readlink(root / "..data")])  # the old dir was removed
    assert first not in hidden
    assert directory.writes == 2


def test_a_file_that_is_not_ours_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    directory = SyncedDirectory(root)
    directory.write({"a": b"1"})
    directory.write({})
    assert visible(root) == {"notes.txt": b"mine"}


@settings(max_examples=25)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "c.yaml", "d-e"]), st.binary(max_size=20), max_size=4
        ),
        min_size=1,
        max_size=5,
    )
)
def test_the_directory_always_shows_the_last_payload(payloads: list[dict[str, bytes]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as temporary:
        directory = SyncedDirectory(temporary)
        for files in payloads:
            directory.write(files)
            assert visible(Path(temporary)) == files
            assert len([e for e in Path(temporary).iterdir() if e.name.startswith("..2")]) == 1


def test_config_file_rules() -> None:
    with pytest.raises(ValueError, match="signal needs pidFile"):
        ConfigSyncConfig.model_validate({"configmap": "c", "dir": "/d", "signal": "HUP"})
    with pytest.raises(ValueError, match="unknown signal 'NOPE'"):
        ConfigSyncConfig.model_validate(
            {"configmap": "c", "dir": "/d", "signal": "NOPE", "pidFile": "p"}
        )
    config = ConfigSyncConfig.model_validate(
        {"configmap": "c", "dir": "/d", "signal": "usr1", "pidFile": "/run/app.pid"}
    )
    assert config.settings().signal == "usr1"


async def wait_for(predicate: object, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_config_change_reaches_the_app(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    async with api_server() as server, App("app") as app:
        async with HTTPClient.from_kubeconfig(server.kubeconfig) as client:
            await client.create(
                CONFIGMAPS,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "web-config"},
                    "data": {"nginx.conf": "worker_processes 1;\n", "mode": "blue"},
                },
            )
            sync = ConfigSync(
                ConfigSyncSettings(
                    configmap="web-config",
                    directory=str(root),
                    kubeconfig=str(server.kubeconfig),
                    notify_url=f"http://{app.address}/-/reload",
                )
            )
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as group:
                group.create_task(sync.serve(stop))
                try:
                    await asyncio.wait_for(sync.synced.wait(), WAIT)
                    assert visible(root) == {
                        "nginx.conf": b"worker_processes 1;\n",
                        "mode": b"blue",
                    }
                    assert app.requests == []  # the first write is not a change
                    current = await client.get(CONFIGMAPS, "web-config")
                    current["data"] = {"mode": "green"}
                    await client.update(CONFIGMAPS, current)
                    await wait_for(lambda: len(app.requests) == 1, "the notification")
                    assert visible(root) == {"mode": b"green"}
                    # Another ConfigMap in the namespace is not ours.
                    await client.create(
                        CONFIGMAPS,
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}},
                    )
                    current = await client.get(CONFIGMAPS, "web-config")
                    current["data"] = {"mode": "red"}
                    await client.update(CONFIGMAPS, current)
                    await wait_for(lambda: len(app.requests) == 2, "the second notification")
                finally:
                    stop.set()
    posted = app.requests[0]
    assert (posted["method"], posted["target"]) == ("POST", "/-/reload")
    assert posted["headers"]["content-type"] == "application/json"
    assert visible(root) == {"mode": b"red"}
    assert sync.notifier.sent == 2


async def test_signal_notification(tmp_path: Path) -> None:
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    got = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, got.set)
    try:
        async with api_server() as server:
            async with HTTPClient.from_kubeconfig(server.kubeconfig) as client:
                sync = ConfigSync(
                    ConfigSyncSettings(
                        configmap="cm",
                        directory=str(tmp_path / "d"),
                        kubeconfig=str(server.kubeconfig),
                        signal="USR1",
                        pid_file=str(pid_file),
                    )
                )
                stop = asyncio.Event()
                async with asyncio.TaskGroup() as group:
                    group.create_task(sync.serve(stop))
                    try:
                        # The ConfigMap does not exist yet: the sidecar waits for it.
                        await client.create(
                            CONFIGMAPS,
                            {
                                "apiVersion": "v1",
                                "kind": "ConfigMap",
                                "metadata": {"name": "cm"},
                                "data": {"k": "v1"},
                            },
                        )
                        await asyncio.wait_for(sync.synced.wait(), WAIT)
                        assert not got.is_set()
                        current = await client.get(CONFIGMAPS, "cm")
                        current["data"] = {"k": "v2"}
                        await client.update(CONFIGMAPS, current)
                        await asyncio.wait_for(got.wait(), WAIT)
                    finally:
                        stop.set()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert visible(tmp_path / "d") == {"k": b"v2"}
