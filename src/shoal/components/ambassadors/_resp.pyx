# cython: language_level=3, boundscheck=False, wraparound=False
"""
The RESP2 scanners of :mod:`~shoal.components.ambassadors.resp` in C: the two loops that run once
per command and once per reply. Same contracts as the pure functions of the same names (the pure
ones are the reference; a Hypothesis test holds the two to the same answers on arbitrary input).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append

from shoal.components.ambassadors.resp import ReplyError

DEF _MAX_DIGITS = 18  # below 2**63: no overflow in the loop


cdef inline Py_ssize_t _digits(const unsigned char* p, Py_ssize_t at, Py_ssize_t end,
                               long long* value) noexcept:
    """Parse the plain decimal digits at ``at`` up to a CRLF; where the CRLF is, or -1 when the
    line is incomplete, or -2 when it holds anything but 1-18 digits before CRLF."""
    cdef long long total = 0
    cdef Py_ssize_t start = at
    while at < end:
        c = p[at]
        if c >= 48 and c <= 57:
            if at - start >= _MAX_DIGITS:
                return -2
            total = total * 10 + (c - 48)
            at += 1
            continue
        if c != 13 or at == start:
            return -2
        if at + 1 >= end:
            return -1
        if p[at + 1] != 10:
            return -2
        value[0] = total
        return at
    return -1


def scan_commands(bytes buf, Py_ssize_t pos, list out, Py_ssize_t max_args,
                  Py_ssize_t max_bulk):
    """Append every whole, ordinary multibulk command from ``pos`` to ``out`` as ``(args, raw)``;
    return where it stopped (see :func:`shoal.components.ambassadors.resp.scan_commands`)."""
    cdef const unsigned char* p = <const unsigned char*> PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t at, eol, start
    cdef long long count, size, index
    cdef list args
    while pos < end:
        if p[pos] != 42:  # b"*"
            return pos
        eol = _digits(p, pos + 1, end, &count)
        if eol < 0 or count <= 0 or count > max_args:
            return pos
        at = eol + 2
        args = []
        for index in range(count):
            if at >= end or p[at] != 36:  # b"$"
                return pos
            eol = _digits(p, at + 1, end, &size)
            if eol < 0 or size > max_bulk:
                return pos
            start = eol + 2
            at = start + size
            if at + 2 > end or p[at] != 13 or p[at + 1] != 10:
                return pos
            PyList_Append(args, PyBytes_FromStringAndSize(<const char*> p + start, size))
            at += 2
        PyList_Append(out, (args, PyBytes_FromStringAndSize(<const char*> p + pos, at - pos)))
        pos = at
    return pos


cdef long long _slow_int(bytes buf, Py_ssize_t start, Py_ssize_t stop, str what) except? -1:
    """A length that is not plain digits: read as the pure scanner reads it (``int``), clamped
    (a length past any buffer means "incomplete" either way)."""
    try:
        value = int(buf[start:stop])
    except ValueError:
        raise ReplyError(f"bad {what} length {buf[start - 1:stop]!r}") from None
    return max(-1, min(value, 1 << 60))


cdef Py_ssize_t _find_crlf(const unsigned char* p, Py_ssize_t at, Py_ssize_t end) noexcept:
    while at + 1 < end:
        if p[at] == 13 and p[at + 1] == 10:
            return at
        at += 1
    return -1


def split_replies(bytes buf, Py_ssize_t pos, Py_ssize_t limit, list out):
    """Append up to ``limit`` whole replies from ``pos`` to ``out`` (each its own bytes); return
    where it stopped (see :func:`shoal.components.ambassadors.resp.split_replies`)."""
    cdef const unsigned char* p = <const unsigned char*> PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t at, eol, owed, first
    cdef long long length
    cdef unsigned char kind
    while limit > 0 and pos < end:
        at = pos
        owed = 1
        while owed:
            if at >= end:
                return pos
            kind = p[at]
            eol = _find_crlf(p, at, end)
            if eol < 0:
                return pos
            owed -= 1
            if kind == 36 or kind == 42:  # $ bulk, * array
                if p[at + 1] == 45:  # a negative length: a null bulk or array
                    if _digits(p, at + 2, end, &length) == eol:
                        length = -length
                    else:
                        length = _slow_int(buf, at + 1, eol, "bulk" if kind == 36 else "array")
                elif _digits(p, at + 1, end, &length) != eol:
                    length = _slow_int(buf, at + 1, eol, "bulk" if kind == 36 else "array")
                if kind == 36:
                    at = eol + 2 if length < 0 else eol + length + 4
                    if at > end:
                        return pos
                else:
                    if length > 0:
                        owed += length
                    at = eol + 2
            elif kind == 43 or kind == 45 or kind == 58:  # + - :
                at = eol + 2
            else:
                raise ReplyError(f"not a RESP2 reply: {buf[at:at + 16]!r}")
        PyList_Append(out, PyBytes_FromStringAndSize(<const char*> p + pos, at - pos))
        pos = at
        limit -= 1
    return pos
