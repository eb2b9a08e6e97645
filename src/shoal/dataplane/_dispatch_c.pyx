# cython: wraparound=True, boundscheck=True
# dispatch.py compiled a second time, from the same source (see native.py).

# The health machines' extension types (declared in _health_c.pxd), under the names dispatch.py
# types its fields with: their per-request methods are C calls from here.
from shoal.dataplane._health_c cimport (
    OutlierDetector as _COutlierDetector,
    PendingLimiter as _CPendingLimiter,
    RetryBudget as _CRetryBudget,
)

from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double _monotonic() noexcept:
    """``time.monotonic()`` without a Python call: the same clock, turned into the same float
    (nanoseconds, then seconds), so times from here and from Python code compare exactly."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>(<int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec) / 1e9


include "dispatch.py"

# The compiled helpers, and the pure modules' own types (shared by both implementations).
from shoal.dataplane._health_c import (
    ActiveHealth,
    OutlierDetector,
    PendingLimiter,
    RetryBudget,
)
from shoal.dataplane._balancing_c import make_picker
from shoal.dataplane._routing_c import Router, RoutingTable, request_path, shard_key
