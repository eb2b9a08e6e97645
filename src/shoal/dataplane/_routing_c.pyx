# cython: annotation_typing=False, wraparound=True, boundscheck=True
# routing.py compiled a second time, from the same source (see native.py).
include "routing.py"

# The compiled helpers, and the pure module's own settings (shared by both implementations).
from shoal.dataplane._balancing_c import make_picker
from shoal.dataplane._hashing_c import make_hasher
from shoal.dataplane._keyhash_c import plain_hash
from shoal.dataplane.routing import RoutingSettings
