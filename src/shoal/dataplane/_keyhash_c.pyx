# cython: boundscheck=False, wraparound=False, cdivision=True
"""
The compiled twin of :func:`shoal.dataplane.routing.plain_hash`: the shard key's CRC-32, read
in place from the request target's bytes.

The reference cuts the path out of the target as a string, finds the key with ``str.find``
(:func:`~shoal.dataplane.routing.plain_key`) and hashes its UTF-8 bytes; this walks the target's
bytes and runs CRC-32 (IEEE 802.3, reflected: the one ``zlib.crc32`` computes) over the key's
bytes where they lie: no copy, no call, no string. The same answer for every input, -1
included; ``tests/dataplane/test_routing.py`` checks the two against each other and against the
regular expression on generated targets. The compiled router (``shoal.dataplane._routing_c``)
binds this function in place of the reference.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.string cimport memcmp

from shoal.dataplane.routing import FORM_SEGMENT, FORM_TO_LAST_SLASH

cdef int _SEGMENT = FORM_SEGMENT
cdef int _TO_LAST_SLASH = FORM_TO_LAST_SLASH
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
    """The first position of ``p`` (``width`` > 0 bytes) in ``d[start:end]``, or -1."""
    cdef long at
    for at in range(start, end - width + 1):
        if d[at] == p[0] and memcmp(d + at, p, width) == 0:
            return at
    return -1


def plain_hash(bytes target, bytes prefix, int form):
    """See :func:`shoal.dataplane.routing.plain_hash` (the same result, compiled)."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(target)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(prefix)
    cdef long n = PyBytes_GET_SIZE(target)
    cdef long width = PyBytes_GET_SIZE(prefix)
    cdef long end = n, start = 0, stop, at, first, slash, line_end, i
    cdef uint32_t crc = 0xFFFFFFFF
    if n == 0 or d[0] != b"/" or width == 0:
        return -1
    for i in range(n):
        if d[i] == b"?":
            end = i  # the path ends at the query
            break
    stop = end  # no match: the whole path is the key
    at = _find(d, 0, end, p, width)
    while at >= 0:
        first = at + width
        slash = -1
        if form == _TO_LAST_SLASH:
            line_end = end
            for i in range(first, end):
                if d[i] == b"\n":
                    line_end = i
                    break
            for i in range(line_end - 1, first - 1, -1):
                if d[i] == b"/":
                    slash = i
                    break
            if slash >= 0:
                start, stop = first, slash
                break
        else:
            for i in range(first, end):
                if d[i] == b"/":
                    slash = i
                    break
            if slash < 0:
                if form == _SEGMENT and end > first:
                    start, stop = first, end
                    break
            elif slash > first:
                start, stop = first, slash
                break
        at = _find(d, at + 1, end, p, width)
    for i in range(start, stop):
        if d[i] > 127:
            return -1
        crc = _TABLE[(crc ^ d[i]) & 0xFF] ^ (crc >> 8)
    return <long>(crc ^ 0xFFFFFFFF)
