"""Container logs: one file per container, rotated by size; read back by ``shoal logs``.

Where: ``DATA_DIR/logs/NAMESPACE_POD_UID/CONTAINER.log`` (the kubelet's
``/var/log/pods/NAMESPACE_POD_UID/CONTAINER/`` layout, flattened), stdout and stderr together,
as the process wrote them; restarts of a container append to the same file. When a file
reaches ``NodeSettings.log_max_bytes`` it becomes ``CONTAINER.log.1`` (older ones shift up to
``log_backups``) and a new file starts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["LogWriter", "follow", "log_dir", "pod_log_dirs", "read_tail"]


def log_dir(logs_root: Path, namespace: str, name: str, uid: str) -> Path:
    return logs_root / f"{namespace}_{name}_{uid}"


def pod_log_dirs(logs_root: Path, namespace: str, name: str) -> list[Path]:
    """The log directories of pods called ``name`` in ``namespace``, newest first."""
    prefix = f"{namespace}_{name}_"
    try:
        found = [
            p
            for p in logs_root.iterdir()
            if p.name.startswith(prefix) and "_" not in p.name[len(prefix) :]
        ]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


class LogWriter:
    """Appends a container's output to its file, rotating by size."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max(max_bytes, 1)
        self.backups = max(backups, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        while data:
            room = self.max_bytes - self._size
            if room <= 0:
                self._rotate()
                continue
            # Cut at a line end inside the room when there is one, so lines stay whole.
            chunk = data[:room]
            if len(data) > room:
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    chunk = chunk[: cut + 1]
                elif self._size > 0:
                    self._rotate()  # the line fits better at the start of a fresh file
                    continue
            self._file.write(chunk)
            self._size += len(chunk)
            data = data[len(chunk) :]
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab")
        self._size = 0

    def close(self) -> None:
        self._file.close()

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Copy ``stream`` into the log until it ends."""
        while True:
            data = await stream.read(65536)
            if not data:
                return
            self.write(data)


def read_tail(path: Path, lines: int | None) -> bytes:
    """The last ``lines`` lines of the log (with the rotated file before it), or all of it."""
    parts: list[bytes] = []
    rotated = path.with_name(path.name + ".1")
    for candidate in (rotated, path):
        try:
            parts.append(candidate.read_bytes())
        except OSError:
            continue
    data = b"".join(parts)
    if lines is None or lines < 0:
        return data
    if lines == 0:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read()
    except OSError:
        return b""


async def follow(path: Path, offset: int, *, poll: float = 0.2) -> AsyncIterator[bytes]:
    """New bytes of ``path`` after ``offset``, as they are written; survives rotation."""
    first = _stat(path)
    inode = first.st_ino if first is not None else None
    while True:
        stat = _stat(path)
        if stat is None:
            await asyncio.sleep(poll)
            continue
        if inode is not None and stat.st_ino != inode:
            # Rotated: the rest of the old file is now NAME.1.
            rest = _read_from(path.with_name(path.name + ".1"), offset)
            if rest:
                yield rest
            offset = 0
        inode = stat.st_ino
        if stat.st_size > offset:
            data = _read_from(path, offset)
            offset += len(data)
            if data:
                yield data
        await asyncio.sleep(poll)
