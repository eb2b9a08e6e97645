"""
``shoal sidecar config-sync``: a ConfigMap's data kept as files in a shared directory; the app told.

Theory of operation
-------------------
**Watching.** The driver lists the one ConfigMap (``fieldSelector=metadata.name=NAME``) with
:class:`shoal.client.HTTPClient`, writes it, then watches from the list's revision. A watch that
ends is resumed from the last revision seen; one that expired (410) relists; a connection error
backs off (0.5 s doubling to 30 s) and relists. A deleted ConfigMap leaves the files as they are
(as the kubelet does for a mounted volume) and is written again when it comes back.

**Writing** is the kubelet's atomic writer (``pkg/volume/util/atomic_writer.go``), so an app
that reads the directory never sees half an update:

1. :func:`payload` (pure) turns ``data`` and ``binaryData`` into file contents, refusing keys
   that are not valid ConfigMap keys; if they equal what ``..data`` holds now, nothing happens.
2. Every file is written (and fsynced) into a new hidden directory ``..<timestamp>.<random>``.
3. A symlink ``..data_tmp`` to it is renamed over ``..data``: the one atomic step.
4. Each key gets a visible symlink ``KEY -> ..data/KEY`` (made once); keys that left lose theirs.
5. The previous timestamped directory is removed.

An app that opens ``DIR/KEY`` therefore reads either the old or the new content, whole.

**Telling the app** after each change that reached the directory (not the first write, which
happens before the app needs it... unless ``notify_initial`` is set): ``signal`` sends a signal
(``HUP`` by default) to the process whose id is in ``pid_file``; ``notify_url`` POSTs
``{"configmap": NAME, "resourceVersion": RV, "keys": [...]}`` to the app. A notification that
fails is logged and retried with the next change; the files are the source of truth.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import logging
import os
import re
import secrets
import signal as signals
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
from pydantic import Field, model_validator

from shoal.client import (
    APIRetryableError,
    HTTPClient,
    KubeConfig,
    ResourceRef,
    WatchExpired,
    load_kubeconfig,
)
from shoal.errors import PermanentError
from shoal.model._base import ShoalModel

__all__ = [
    "ConfigSyncConfig",
    "ConfigSyncSettings",
    "Notifier",
    "PayloadError",
    "SyncedDirectory",
    "payload",
    "run_config_sync",
]

log = logging.getLogger("shoal.sidecar.config_sync")

DATA: Final = "..data"
_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+")
_CONFIGMAPS: Final = "v1"


class PayloadError(PermanentError):
    """The ConfigMap holds something that cannot be a file (the message names the key)."""


def payload(
    data: Mapping[str, Any] | None, binary_data: Mapping[str, Any] | None
) -> dict[str, bytes]:
    """The files a ConfigMap's ``data`` (text) and ``binaryData`` (base64) become."""
    files: dict[str, bytes] = {}
    for key, value in (data or {}).items():
        files[_check_key(key)] = str(value).encode("utf-8")
    for key, value in (binary_data or {}).items():
        if key in files:
            raise PayloadError(f"key {key!r} is in both data and binaryData")
        try:
            files[_check_key(key)] = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise PayloadError(f"binaryData[{key!r}]: not base64") from None
    return files


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or key in (".", "..") or key.startswith(".."):
        raise PayloadError(
            f"key {key!r}: a file name must consist of alphanumerics, '-', '_' or '.' "
            "and may not be '.', '..' or start with '..'"
        )
    return key


class SyncedDirectory:
    """The kubelet-style atomic writer over one directory; see the module docstring."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory)
        self.writes = 0
        """Updates that changed the directory."""

    def current(self) -> dict[str, bytes] | None:
        """The files ``..data`` holds now, or ``None`` when there is none yet."""
        data = self.path / DATA
        if not data.is_dir():
            return None
        return {entry.name: entry.read_bytes() for entry in data.iterdir() if entry.is_file()}

    def write(self, files: Mapping[str, bytes]) -> bool:
        """Make the directory hold exactly ``files``; False when it already did."""
        if self.current() == dict(files):
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        data = self.path / DATA
        old = os.readlink(data) if data.is_symlink() else None
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y_%m_%d_%H_%M_%S")
        fresh = self.path / f"..{stamp}.{secrets.token_hex(4)}"
        fresh.mkdir(mode=0o755)
        for name, content in files.items():
            descriptor = os.open(fresh / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(descriptor, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
        _fsync_dir(fresh)
        temporary = self.path / "..data_tmp"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(fresh.name)
        os.replace(temporary, data)  # the atomic step
        for name in files:
            link = self.path / name
            if not link.is_symlink():
                link.symlink_to(f"{DATA}/{name}")
        for entry in self.path.iterdir():
            if (
                entry.is_symlink()
                and not entry.name.startswith("..")
                and entry.name not in files
                and os.readlink(entry) == f"{DATA}/{entry.name}"
            ):
                entry.unlink()
        _fsync_dir(self.path)
        if old is not None and old != fresh.name and old.startswith(".."):
            _remove_tree(self.path / old)
        self.writes += 1
        return True


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_tree(path: Path) -> None:
    if not path.is_dir() or path.is_symlink():
        return
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigSyncSettings:
    """Everything ``shoal sidecar config-sync`` can be told."""

    configmap: str
    """The ConfigMap's name."""
    directory: str
    """The shared directory the files go to (an emptyDir volume both containers mount)."""
    namespace: str | None = None
    """Its namespace (default: the kubeconfig context's, else ``default``)."""
    kubeconfig: str | None = None
    """The kubeconfig file (default: ``$KUBECONFIG``, then shoal's and kubectl's usual places)."""
    signal: str | None = None
    """A signal name (``HUP``, ``USR1``...) sent to the process in ``pid_file`` on change."""
    pid_file: str | None = None
    """A file holding the app's process id (with ``signal``)."""
    notify_url: str | None = None
    """An URL that gets a JSON POST on change."""
    notify_initial: bool = False
    """Also tell the app after the first write (by default only changes are told)."""
    notify_timeout: float = 5.0
    """Seconds a notification POST may take."""


class ConfigSyncConfig(ShoalModel):
    """``--config`` file of ``shoal sidecar config-sync``."""

    configmap: str = Field(min_length=1)
    dir: str = Field(min_length=1)
    namespace: str | None = None
    kubeconfig: str | None = None
    signal: str | None = None
    pid_file: str | None = None
    notify_url: str | None = None
    notify_initial: bool = False

    @model_validator(mode="after")
    def _notify(self) -> ConfigSyncConfig:
        if self.signal is not None:
            _signal_number(self.signal)
            if self.pid_file is None:
                raise ValueError("signal needs pidFile (the file with the app's process id)")
        if self.signal is not None and self.notify_url is not None:
            raise ValueError("give one of signal (with pidFile) or notifyUrl, not both")
        return self

    def settings(self) -> ConfigSyncSettings:
        return ConfigSyncSettings(
            configmap=self.configmap,
            directory=self.dir,
            namespace=self.namespace,
            kubeconfig=self.kubeconfig,
            signal=self.signal,
            pid_file=self.pid_file,
            notify_url=self.notify_url,
            notify_initial=self.notify_initial,
        )


def _signal_number(name: str) -> signals.Signals:
    text = name.upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signals.Signals[text]
    except KeyError:
        raise ValueError(f"unknown signal {name!r} (HUP, USR1, USR2, TERM...)") from None


class Notifier:
    """Tells the app that the files changed: a signal to a pid from a file, or an HTTP POST."""

    def __init__(self, settings: ConfigSyncSettings) -> None:
        self.settings = settings
        self.signal = _signal_number(settings.signal) if settings.signal else None
        self.sent = 0
        self.failed = 0

    async def notify(self, resource_version: str, keys: list[str]) -> None:
        s = self.settings
        try:
            if self.signal is not None and s.pid_file is not None:
                text = (await asyncio.to_thread(Path(s.pid_file).read_text)).strip()
                os.kill(int(text), self.signal)
            elif s.notify_url is not None:
                body = {"configmap": s.configmap, "resourceVersion": resource_version, "keys": keys}
                timeout = aiohttp.ClientTimeout(total=s.notify_timeout)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.post(s.notify_url, json=body) as response,
                ):
                    if response.status >= 400:
                        raise OSError(f"{s.notify_url} answered {response.status}")
            else:
                return
        except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as error:
            self.failed += 1
            log.warning("could not tell the app about the change: %s", error)
            return
        self.sent += 1


# --- the driver ---------------------------------------------------------------------------------


class ConfigSync:
    """List, write, watch, write...; see the module docstring."""

    def __init__(self, settings: ConfigSyncSettings, config: KubeConfig | None = None) -> None:
        self.settings = settings
        self.config = config or load_kubeconfig(settings.kubeconfig, namespace=settings.namespace)
        self.directory = SyncedDirectory(settings.directory)
        self.notifier = Notifier(settings)
        self.synced = asyncio.Event()
        """Set after the first successful write (or when the files were already current)."""
        self.resource_version = ""

    async def _apply(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        version = str(metadata.get("resourceVersion", ""))
        try:
            files = payload(body.get("data"), body.get("binaryData"))
        except PayloadError as error:
            log.error("ConfigMap %s not written: %s", self.settings.configmap, error)
            return
        first = not self.synced.is_set()
        changed = await asyncio.to_thread(self.directory.write, files)
        self.resource_version = version
        self.synced.set()
        if changed:
            log.info("wrote ConfigMap %s at revision %s", self.settings.configmap, version)
            if not first or self.settings.notify_initial:
                await self.notifier.notify(version, sorted(files))

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the directory in sync until ``stop`` is set."""
        s = self.settings
        async with HTTPClient(self.config, namespace=s.namespace) as client:
            namespace = s.namespace or client.namespace
            ref = ResourceRef(_CONFIGMAPS, "ConfigMap", namespace)
            selector = f"metadata.name={s.configmap}"
            delay = 0.5
            while not stop.is_set():
                try:
                    listed = await client.list(ref, field_selector=selector)
                    if listed.items:
                        await self._apply(listed.items[0])
                    else:
                        log.warning(
                            "ConfigMap %s/%s not found; waiting for it", namespace, s.configmap
                        )
                    version = listed.resource_version
                    while not stop.is_set():
                        async for event in client.watch(ref, version, field_selector=selector):
                            if event.resource_version:
                                version = event.resource_version
                            if event.type in ("ADDED", "MODIFIED"):
                                await self._apply(event.object)
                            elif event.type == "DELETED":
                                log.warning("ConfigMap %s deleted; keeping the files", s.configmap)
                        delay = 0.5
                except WatchExpired:
                    continue
                except (APIRetryableError, OSError) as error:
                    log.warning("API error, retrying in %.1fs: %s", delay, error)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(delay * 2, 30.0)

    async def serve(self, stop: asyncio.Event) -> None:
        """:meth:`run` until ``stop``, cancelling a watch that is waiting for the server."""
        async with asyncio.TaskGroup() as group:
            task = group.create_task(self.run(stop))
            await stop.wait()
            task.cancel()


async def run_config_sync(
    settings: ConfigSyncSettings, *, stop: asyncio.Event | None = None
) -> None:
    """Sync until ``stop`` is set or SIGTERM/SIGINT arrives."""
    sync = ConfigSync(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signals.Signals] = []
    for signum in (signals.SIGTERM, signals.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    print(f"syncing ConfigMap {settings.configmap} into {settings.directory}", flush=True)
    try:
        await sync.serve(stop)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
