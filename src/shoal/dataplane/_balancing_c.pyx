# cython: annotation_typing=False, wraparound=True, boundscheck=True
# balancing.py compiled a second time, from the same source (see native.py).
include "balancing.py"

# The pure module's own values and settings (shared by both implementations).
from shoal.dataplane.balancing import BalancingSettings, Endpoint
