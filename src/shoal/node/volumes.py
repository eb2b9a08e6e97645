"""A pod's volumes, materialized as directories under the node's data dir.

``DATA_DIR/pods/UID/volumes/NAME/`` holds each volume; every container of the pod sees the same
directory (see :mod:`shoal.node.environment` for how a process finds it).

* ``emptyDir``: an empty directory, kept across container restarts, removed with the pod.
* ``configMap`` / ``secret``: one file per key (or per ``items`` entry, at its ``path``), with
  ``defaultMode`` (or the item's ``mode``; 0644 by default). They are written the way the
  kubelet's ``AtomicWriter`` does it: the files go into a fresh hidden directory, a ``..data``
  symlink is switched to it with one ``rename``, and each visible name is a symlink through
  ``..data``; so a reader sees the old set of files or the new one, never a mix. The node
  rewrites them when the ConfigMap or Secret changes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from shoal.errors import RetryableError
from shoal.model.core import Container, KeyToPath, Volume
from shoal.node.environment import Lookup, config_map_items, secret_items

__all__ = ["PodVolumes", "VolumeError", "write_atomic"]

DEFAULT_MODE = 0o644

Payload = dict[str, tuple[bytes, int]]


class VolumeError(RetryableError):
    """A volume cannot be set up yet (a ConfigMap or Secret is missing): ``FailedMount``."""


def _safe_relative(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise VolumeError(f"invalid path {path!r}: must be relative and may not contain '..'")
    return str(pure)


def write_atomic(directory: Path, payload: Payload) -> None:
    """Make ``directory`` hold exactly ``payload`` (relative path -> content, mode), switched in
    with one rename of the ``..data`` symlink."""
    directory.mkdir(parents=True, exist_ok=True)
    version = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{secrets.token_hex(4)}"
    target = directory / version
    target.mkdir()
    for relative, (content, mode) in payload.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    temporary = directory / "..data_tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(version)
    os.replace(temporary, data)
    visible = {PurePosixPath(relative).parts[0] for relative in payload}
    for name in visible:
        link = directory / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"..data/{name}")
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in visible:
            entry.unlink()
    if old is not None and old != version:
        shutil.rmtree(directory / old, ignore_errors=True)


def _payload(
    items: Mapping[str, str],
    selected: list[KeyToPath] | None,
    default_mode: int | None,
    what: str,
    optional: bool,
) -> Payload:
    mode = DEFAULT_MODE if default_mode is None else default_mode
    payload: Payload = {}
    if selected is None:
        for key, value in items.items():
            payload[_safe_relative(key)] = (value.encode(), mode)
        return payload
    for item in selected:
        if item.key not in items:
            if optional:
                continue
            raise VolumeError(f"configuration of {what}: key {item.key!r} not found")
        payload[_safe_relative(item.path)] = (
            items[item.key].encode(),
            item.mode if item.mode is not None else mode,
        )
    return payload


class PodVolumes:
    """The volumes of one pod."""

    def __init__(self, root: Path, volumes: list[Volume] | None) -> None:
        self.root = root
        self.volumes = list(volumes or [])
        self._written: dict[str, Payload] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    def mounts(self, container: Container) -> dict[str, str]:
        """mountPath -> the directory (or, with ``subPath``, the entry) on this machine."""
        mounts: dict[str, str] = {}
        for mount in container.volume_mounts or ():
            where = self.path(mount.name)
            if mount.sub_path:
                where = where / _safe_relative(mount.sub_path)
            mounts[mount.mount_path] = str(where)
        return mounts

    def sync(self, namespace: str, config_maps: Lookup, secrets_: Lookup) -> list[str]:
        """Create or update every volume; the names of those whose content changed.

        Raises :class:`VolumeError` for the first volume that cannot be written (the others
        are still written)."""
        changed: list[str] = []
        failure: VolumeError | None = None
        for volume in self.volumes:
            try:
                if self._sync_one(volume, namespace, config_maps, secrets_):
                    changed.append(volume.name)
            except VolumeError as error:
                failure = failure or VolumeError(
                    f'MountVolume.SetUp failed for volume "{volume.name}": {error}'
                )
        if failure is not None:
            raise failure
        return changed

    def _sync_one(
        self, volume: Volume, namespace: str, config_maps: Lookup, secrets_: Lookup
    ) -> bool:
        directory = self.path(volume.name)
        if volume.empty_dir is not None:
            if directory.is_dir():
                return False
            directory.mkdir(parents=True, exist_ok=True)
            return True
        obj: Mapping[str, Any] | None
        if volume.config_map is not None:
            source = volume.config_map
            obj = config_maps(namespace, source.name)
            what, optional = f'configmap "{source.name}"', bool(source.optional)
            items = config_map_items(obj) if obj is not None else {}
            selected, mode = source.items, source.default_mode
        elif volume.secret is not None:
            secret = volume.secret
            obj = secrets_(namespace, secret.secret_name)
            what, optional = f'secret "{secret.secret_name}"', bool(secret.optional)
            items = secret_items(obj) if obj is not None else {}
            selected, mode = secret.items, secret.default_mode
        else:
            return False
        if obj is None and not optional:
            raise VolumeError(f"{what} not found")
        payload = _payload(items, selected, mode, what, optional)
        if self._written.get(volume.name) == payload:
            return False
        write_atomic(directory, payload)
        self._written[volume.name] = payload
        return True

    def refers_to(self, kind: str, name: str) -> bool:
        """Whether a volume of this pod shows the ConfigMap or Secret ``name``."""
        for volume in self.volumes:
            if kind == "ConfigMap" and volume.config_map and volume.config_map.name == name:
                return True
            if kind == "Secret" and volume.secret and volume.secret.secret_name == name:
                return True
        return False

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._written.clear()
