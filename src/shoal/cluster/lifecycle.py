"""Start, find and stop the one-machine cluster process (what ``shoal up`` and ``shoal down`` do).

The cluster runs as one background process (``shoal cluster run``) in its own session, with its
output in ``DATA_DIR/cluster.log``. When everything inside it is serving, it writes
``DATA_DIR/cluster.json`` (mode 0600): its pid, the API server's URL and the kubeconfig path.
That file is how later commands find it; a file whose process is gone (or is no longer a shoal
cluster: pids are reused) counts as no cluster.

Stopping sends SIGTERM and waits: the cluster stops its pods gracefully (SIGTERM to each pod's
process group, then SIGKILL after the grace period) before it exits. If it does not exit in
time it is killed, and its node's reaper kills whatever pod processes remain.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import PermanentError

__all__ = [
    "LOG_FILE",
    "STATE_FILE",
    "ClusterStartError",
    "ClusterState",
    "process_alive",
    "read_state",
    "remove_state",
    "start_in_background",
    "stop_cluster",
    "write_state",
]

STATE_FILE = "cluster.json"
LOG_FILE = "cluster.log"

_STARTED: dict[int, subprocess.Popen[bytes]] = {}
"""Clusters this process started and that still run: kept so they are reaped when they stop
(no zombie) and never reported as a child left running."""


class ClusterStartError(PermanentError):
    """The cluster process did not come up; the message holds the end of its log."""


@dataclass(frozen=True, slots=True)
class ClusterState:
    """A running cluster, as recorded in ``DATA_DIR/cluster.json``."""

    pid: int
    url: str
    """The API server's URL."""
    kubeconfig: Path
    data_dir: Path
    started: float
    """When it became ready (seconds since the epoch)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "url": self.url,
                "kubeconfig": str(self.kubeconfig),
                "dataDir": str(self.data_dir),
                "started": self.started,
            },
            indent=2,
        )


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live shoal cluster process (not a zombie, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[-1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = cmdline.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return b"cluster" in words and any(b"shoal" in word for word in words)


def write_state(state: ClusterState) -> None:
    """Write the state file atomically (readers never see half of it), readable by its owner only."""
    path = state.data_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(state.to_json())
    os.replace(temporary, path)


def read_state(data_dir: Path) -> ClusterState | None:
    """The running cluster of ``data_dir``, or None when there is none."""
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        state = ClusterState(
            pid=int(raw["pid"]),
            url=str(raw["url"]),
            kubeconfig=Path(raw["kubeconfig"]),
            data_dir=Path(raw["dataDir"]),
            started=float(raw["started"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if process_alive(state.pid) else None


def remove_state(data_dir: Path, pid: int) -> None:
    """Remove the state file if it still describes ``pid``."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        raw = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        if int(raw["pid"]) == pid:
            (data_dir / STATE_FILE).unlink()


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def start_in_background(
    data_dir: Path,
    args: Sequence[str] = (),
    *,
    timeout: float = 60.0,
    on_wait: Callable[[float], None] | None = None,
) -> tuple[ClusterState, bool]:
    """The running cluster of ``data_dir``, starting one if there is none.

    Returns the state and whether this call started it. ``args`` are extra ``shoal cluster run``
    options (``--port``, ``--address``...). ``on_wait`` is called with the seconds waited so far
    while the new cluster starts (for progress output).
    """
    existing = read_state(data_dir)
    if existing is not None:
        return existing, False
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = data_dir / LOG_FILE
    command = [sys.executable, "-m", "shoal", "cluster", "run", "--data-dir", str(data_dir), *args]
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        # A session of its own: the terminal's Ctrl-C and closing it do not reach the cluster.
        child = subprocess.Popen(
            command, stdin=devnull, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    began = time.monotonic()
    deadline = began + timeout
    delay = 0.02
    while True:
        code = child.poll()
        if code is not None:
            raise ClusterStartError(
                f"the cluster exited with code {code} while starting; the end of "
                f"{log_path}:\n{_log_tail(log_path)}"
            )
        state = read_state(data_dir)
        if state is not None and state.pid == child.pid:
            _STARTED[child.pid] = child
            return state, True
        now = time.monotonic()
        if now > deadline:
            child.send_signal(signal.SIGTERM)
            raise ClusterStartError(
                f"the cluster did not become ready within {timeout:.0f}s; the end of "
                f"{log_path}:\n{_log_tail(log_path)}"
            )
        if on_wait is not None:
            on_wait(now - began)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _reap_exited() -> None:
    """Collect the exit status of clusters this process started that have ended (killed, say)."""
    for pid, child in list(_STARTED.items()):
        if child.poll() is not None:
            del _STARTED[pid]


def stop_cluster(data_dir: Path, *, timeout: float = 60.0) -> ClusterState | None:
    """Stop the cluster of ``data_dir`` (SIGTERM, then SIGKILL after ``timeout``); the state it
    had, or None when none was running."""
    _reap_exited()
    state = read_state(data_dir)
    if state is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    delay = 0.02
    started = _STARTED.pop(state.pid, None)
    while process_alive(state.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10.0
            while process_alive(state.pid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    if started is not None:
        started.wait()
    remove_state(data_dir, state.pid)
    return state
