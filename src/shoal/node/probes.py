"""The state of one probe of one container: when it runs next and what it concludes.

Theory of operation (the kubelet's prober worker):

* a probe first runs ``initialDelaySeconds`` after the container started, then every
  ``periodSeconds``; each run has ``timeoutSeconds`` to answer;
* its result flips only after ``successThreshold`` consecutive successes or
  ``failureThreshold`` consecutive failures;
* before any result, readiness and startup count as failed (not ready, not started) and liveness
  as succeeded (alive);
* while a readiness probe has never succeeded it may run more often than its period
  (``fast_interval``): a pod becomes Ready soon after it listens. Failures are what a faster
  probe could count too early, and readiness failures only keep the pod not ready, so this
  changes no outcome except the wait.

The class is pure: the caller passes the clock's time and the results of the runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ProbeKind", "ProbeState", "ProbeTiming"]

ProbeKind = Literal["startup", "readiness", "liveness"]


@dataclass(frozen=True, slots=True)
class ProbeTiming:
    """A probe's numbers, in seconds (already scaled)."""

    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(slots=True)
class ProbeState:
    """Decides when to probe and what the results mean."""

    kind: ProbeKind
    timing: ProbeTiming
    started_at: float
    fast_interval: float | None = None
    result: bool | None = None
    """The conclusion so far: None before the thresholds are first met."""
    successes: int = 0
    failures: int = 0
    runs: int = 0
    ever_succeeded: bool = False
    _last_run: float | None = None

    @property
    def passing(self) -> bool:
        """What the probe means now, with the defaults before any conclusion."""
        if self.result is None:
            return self.kind == "liveness"
        return self.result

    def next_run(self) -> float:
        """When the probe should run next (clock time)."""
        if self._last_run is None:
            return self.started_at + self.timing.initial_delay
        interval = self.timing.period
        if self.kind == "readiness" and not self.ever_succeeded and self.fast_interval is not None:
            interval = min(interval, self.fast_interval)
        return self._last_run + interval

    def record(self, success: bool, now: float) -> bool | None:
        """Take the result of a run at ``now``; return the new conclusion if it changed."""
        self._last_run = now
        self.runs += 1
        if success:
            self.successes += 1
            self.failures = 0
            self.ever_succeeded = True
            flips = self.successes >= self.timing.success_threshold and self.result is not True
            if flips:
                self.result = True
                return True
            return None
        self.failures += 1
        self.successes = 0
        fast = self.kind == "readiness" and not self.ever_succeeded
        threshold = 1 if fast else self.timing.failure_threshold
        if self.failures >= threshold and self.result is not False:
            self.result = False
            return False
        return None
