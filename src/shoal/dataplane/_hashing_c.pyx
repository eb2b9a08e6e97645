# cython: annotation_typing=False, wraparound=True, boundscheck=True
# hashing.py compiled a second time, from the same source (see native.py).
include "hashing.py"

# The pure module's own settings (shared by both implementations).
from shoal.dataplane.hashing import HashingSettings
