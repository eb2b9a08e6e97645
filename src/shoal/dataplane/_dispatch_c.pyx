# cython: wraparound=True, boundscheck=True
# dispatch.py compiled a second time, from the same source (see native.py).

# The health machines' extension types (declared in _health_c.pxd), under the names dispatch.py
# types its fields with: their per-request methods are C calls from here.
from shoal.dataplane._health_c cimport (
    OutlierDetector as _COutlierDetector,
    PendingLimiter as _CPendingLimiter,
    RetryBudget as _CRetryBudget,
)

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
