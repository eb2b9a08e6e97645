# cython: annotation_typing=False, wraparound=True, boundscheck=True
# health.py compiled a second time, from the same source (see native.py).
include "health.py"

# The pure module's own values, events and settings (shared by both implementations).
from shoal.dataplane.health import (
    ActiveCheckSettings,
    Admission,
    CheckResult,
    Ejected,
    EjectionRefused,
    Failure,
    HealthState,
    Outcome,
    OutlierSettings,
    PendingSettings,
    Readmitted,
    RetryDecision,
    RetrySettings,
    Transition,
)

# The per-request aliases of health.py, bound again to the pure module's members.
_SEND = Admission.SEND
_QUEUE = Admission.QUEUE
_REJECT = Admission.REJECT
_SUCCESS = Outcome.SUCCESS
