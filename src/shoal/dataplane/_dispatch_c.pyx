# cython: wraparound=True, boundscheck=True
# dispatch.py compiled a second time, from the same source (see native.py).
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
