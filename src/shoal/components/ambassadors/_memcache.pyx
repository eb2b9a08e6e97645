# cython: annotation_typing=False, wraparound=True, boundscheck=True
# memcache.py compiled a second time, from the same source (see native.py): the memcached text
# protocol's parser and response scanner, with the same behaviour (a Hypothesis test compares
# the two on arbitrary input).
include "memcache.py"
