# cython: wraparound=True, boundscheck=True
# driver.py compiled a second time, from the same source (see native.py).
include "driver.py"

# The compiled helpers, and the pure modules' own types (shared by both implementations).
from shoal.dataplane._fastpath_c import forwarding_tail, scan_request, scan_response
from shoal.dataplane.driver import (
    Dispatcher,
    Pick,
    ProxySettings,
    _RouteDispatcher,
)
