# cython: boundscheck=False, wraparound=False, cdivision=True
"""
The compiled twin of :func:`shoal.dataplane.routing.segment_hash`: the shard key's CRC-32, read
in place from the request target's bytes.

The reference finds the key with ``bytes.find`` and hashes a copy with ``zlib.crc32``; this walks
the target once and runs CRC-32 (IEEE 802.3, reflected, the polynomial ``zlib.crc32`` uses) over
the key's bytes where they lie: no copy, no call, no string. The same answer for every input,
-1 included; ``tests/dataplane/test_routing.py`` checks both against
``key_hash(segment_key(...))`` on generated targets. The compiled router
(``shoal.dataplane._routing_c``) binds this function in place of the reference.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.string cimport memcmp

cdef uint32_t _TABLE[256]


cdef void _fill_table():
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = n
        for k in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        _TABLE[n] = c


_fill_table()


cdef inline long _find(const unsigned char* d, long start, long end, const unsigned char* p, long width):
    """The first position of ``p`` in ``d[start:end]`` at or after ``start``, or -1."""
    cdef long at
    for at in range(start, end - width + 1):
        if d[at] == p[0] and memcmp(d + at, p, width) == 0:
            return at
    return -1


def segment_hash(bytes target, bytes prefix):
    """See :func:`shoal.dataplane.routing.segment_hash` (the same result, compiled)."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(target)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(prefix)
    cdef long n = PyBytes_GET_SIZE(target)
    cdef long width = PyBytes_GET_SIZE(prefix)
    cdef long end = n, start = 0, stop, at, first, slash, i
    cdef uint32_t crc = 0xFFFFFFFF
    if n == 0 or d[0] != b"/":
        return -1
    for i in range(n):
        if d[i] == b"?":
            end = i
            break
    stop = end
    at = _find(d, 0, end, p, width) if width > 0 else 0
    while at >= 0:
        first = at + width
        slash = end
        for i in range(first, end):
            if d[i] == b"/":
                slash = i
                break
        if slash > first:
            start, stop = first, slash
            break
        at = _find(d, at + 1, end, p, width) if width > 0 else (at + 1 if at + 1 <= end else -1)
    for i in range(start, stop):
        if d[i] > 127:
            return -1
        crc = _TABLE[(crc ^ d[i]) & 0xFF] ^ (crc >> 8)
    return <long>(crc ^ 0xFFFFFFFF)
