# cython: annotation_typing=False, wraparound=True, boundscheck=True
# fastpath.py compiled a second time, from the same source (see native.py).
include "fastpath.py"
