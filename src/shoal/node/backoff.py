"""Restart back-off of one container: 10 s, doubling to 5 min, reset after a long healthy run.

Theory of operation (the kubelet's, simplified): after a container exits and the restart policy
says it restarts, the node waits ``delay`` before starting it again; ``delay`` starts at the base
and doubles with each restart up to the cap. A container that ran at least ``reset_after``
seconds before it exited counts as healthy: its back-off starts from the base again. While the
node waits, the container's state is ``waiting`` with reason ``CrashLoopBackOff``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestartBackoff", "restart_wanted"]


@dataclass(slots=True)
class RestartBackoff:
    """The back-off of one container (pure: the caller passes the times)."""

    base: float = 10.0
    cap: float = 300.0
    reset_after: float = 600.0
    _next: float = 0.0

    def after_exit(self, ran_for: float) -> float:
        """The delay before the next start of a container that ran ``ran_for`` seconds."""
        if ran_for >= self.reset_after or self._next <= 0:
            self._next = self.base
        delay = min(self._next, self.cap)
        self._next = min(self._next * 2, self.cap)
        return delay


def restart_wanted(policy: str, exit_code: int) -> bool:
    """Whether a container that exited with ``exit_code`` restarts under ``policy``."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False
