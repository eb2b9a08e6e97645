# cython: boundscheck=False, wraparound=False, cdivision=True
"""
The compiled twin of :mod:`shoal.dataplane.fastpath`: the same two scanners, written as byte loops.

:mod:`shoal.dataplane.fastpath` is the reference (anchored regular expressions over the head,
then ``findall``/``finditer`` over its lowered copy); this module walks the head once, byte by
byte, classifying field names as it goes, and gives exactly what the reference gives for every
input: the same ``None``, the same :class:`~shoal.dataplane.http1.Request`, the same bytes.
``tests/dataplane/test_fastpath.py`` checks that on generated and hand-picked heads. The grammar
(see the reference's patterns):

* request line ``METHOD SP /target SP HTTP/1.1 CRLF`` with a method of seven, a target of
  ``[A-Za-z0-9-._~!$&'()*+,;=:@/%?]`` after its ``/``; at least one field;
* response line ``HTTP/1.1 SP [1-5]DD SP reason CRLF`` (reason: printable ASCII); any fields;
* a field: token name, ``": "``, a value of printable ASCII with no space first or last, CRLF;
  the head ends at an empty line.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.string cimport memcpy

from shoal.dataplane.fastpath import forwarding_tail
from shoal.dataplane.http1 import Request

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyObject* PyType_GenericAlloc(PyTypeObject* kind, Py_ssize_t items) except NULL

# A Request built without its dataclass __init__ (Python code, ~0.15 µs): allocated by its type
# and its nine slots filled in C at the offsets its member descriptors give, exactly what the
# generated __init__ stores (the equivalence tests compare the two field by field).
_FIELDS = (
    "method", "target", "http_version", "headers", "framing", "content_length", "keep_alive",
    "expect_continue", "upgrade",
)
cdef Py_ssize_t _OFFSET[9]


cdef void _offsets() except *:
    cdef int i
    if tuple(Request.__dataclass_fields__) != _FIELDS:
        raise ImportError("http1.Request's fields changed: update _fastpath_c._FIELDS")
    for i, name in enumerate(_FIELDS):
        descriptor = Request.__dict__[name]
        if type(descriptor).__name__ != "member_descriptor":
            raise ImportError(f"http1.Request.{name} is not a slot")
        _OFFSET[i] = (<PyMemberDescrObject*>descriptor).d_member.offset

_offsets()


cdef inline void _store(object request, int i, object value):
    cdef PyObject** slot = <PyObject**>((<char*><PyObject*>request) + _OFFSET[i])
    Py_INCREF(value)
    slot[0] = <PyObject*>value  # a fresh object: the slot was empty


cdef inline void _set_item(object container, Py_ssize_t index, object item):
    """Fill slot ``index`` of a new tuple (PyTuple_SET_ITEM steals a reference: give it one)."""
    Py_INCREF(item)
    PyTuple_SET_ITEM(container, index, item)


cdef object _new_request(object method, object target, object fields, object framing,
                         object length):
    request = <object>PyType_GenericAlloc(<PyTypeObject*>Request, 0)
    Py_DECREF(request)  # the cast took a reference of its own
    _store(request, 0, method)
    _store(request, 1, target)
    _store(request, 2, _V11)
    _store(request, 3, fields)
    _store(request, 4, framing)
    _store(request, 5, length)
    _store(request, 6, True)
    _store(request, 7, False)
    _store(request, 8, None)
    return request

__all__ = ["forwarding_tail", "scan_request", "scan_response"]

cdef unsigned char _TOKEN[256]
cdef unsigned char _TARGET[256]

cdef void _tables():
    cdef int c
    cdef bytes token = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    cdef bytes target = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%?"
    for c in range(256):
        _TOKEN[c] = 0
        _TARGET[c] = 0
    for c in token:
        _TOKEN[c] = 1
    for c in target:
        _TARGET[c] = 1

_tables()

# Field kinds (what the reference's "special" patterns single out).
cdef enum:
    F_OTHER = 0
    F_HOST
    F_CONTENT_LENGTH
    F_CONNECTION
    F_KEEP_ALIVE
    F_HOP            # te, trailer, transfer-encoding, upgrade, proxy-*: the general path's
    F_EXPECT         # requests only
    F_FORWARDED      # x-forwarded-for/-proto: requests only
    F_CLOSE          # a field named "close": responses only

cdef bytes _CLOSE_LINE = b"Connection: close\r\n"

cdef bytes _M_GET = b"GET"
cdef bytes _M_HEAD = b"HEAD"
cdef bytes _M_POST = b"POST"
cdef bytes _M_PUT = b"PUT"
cdef bytes _M_DELETE = b"DELETE"
cdef bytes _M_OPTIONS = b"OPTIONS"
cdef bytes _M_PATCH = b"PATCH"
cdef bytes _V11 = b"1.1"


cdef inline unsigned char _lower(unsigned char c) noexcept:
    if c >= 65 and c <= 90:
        return c + 32
    return c


cdef bint _is(const unsigned char* p, Py_ssize_t n, const char* word, Py_ssize_t m) noexcept:
    """``p[:n]`` equals the lower-case ``word`` (length ``m``), ignoring ASCII case."""
    cdef Py_ssize_t i
    if n != m:
        return False
    for i in range(n):
        if _lower(p[i]) != <unsigned char>word[i]:
            return False
    return True


cdef int _kind(const unsigned char* p, Py_ssize_t n) noexcept:
    """The kind of the field named ``p[:n]`` (any case)."""
    cdef unsigned char c
    if n < 2:
        return F_OTHER
    c = _lower(p[0])
    if n >= 6 and c == b"p" and _is(p, 6, b"proxy-", 6):
        return F_HOP
    if c == b"h":
        return F_HOST if _is(p, n, b"host", 4) else F_OTHER
    if c == b"c":
        if _is(p, n, b"content-length", 14):
            return F_CONTENT_LENGTH
        if _is(p, n, b"connection", 10):
            return F_CONNECTION
        if _is(p, n, b"close", 5):
            return F_CLOSE
        return F_OTHER
    if c == b"k":
        return F_KEEP_ALIVE if _is(p, n, b"keep-alive", 10) else F_OTHER
    if c == b"t":
        if _is(p, n, b"te", 2) or _is(p, n, b"trailer", 7) or _is(p, n, b"transfer-encoding", 17):
            return F_HOP
        return F_OTHER
    if c == b"u":
        return F_HOP if _is(p, n, b"upgrade", 7) else F_OTHER
    if c == b"e":
        return F_EXPECT if _is(p, n, b"expect", 6) else F_OTHER
    if c == b"x":
        if _is(p, n, b"x-forwarded-for", 15) or _is(p, n, b"x-forwarded-proto", 17):
            return F_FORWARDED
    return F_OTHER


cdef Py_ssize_t _field(
    const unsigned char* d, Py_ssize_t pos, Py_ssize_t n,
    Py_ssize_t* name_end, Py_ssize_t* value_end,
) noexcept:
    """Parse one field line at ``pos``: the position after its CRLF, or -1 if it is not one."""
    cdef Py_ssize_t start = pos
    cdef unsigned char c
    while pos < n and _TOKEN[d[pos]]:
        pos += 1
    if pos == start or pos + 2 >= n or d[pos] != b":" or d[pos + 1] != b" ":
        return -1
    name_end[0] = pos
    pos += 2
    c = d[pos]
    if c < 0x21 or c > 0x7E:
        return -1
    pos += 1
    while pos < n:
        c = d[pos]
        if c < 0x20 or c > 0x7E:
            break
        pos += 1
    if d[pos - 1] == b" " or pos + 1 >= n or d[pos] != b"\r" or d[pos + 1] != b"\n":
        return -1
    value_end[0] = pos
    return pos + 2


cdef long long _digits(const unsigned char* p, Py_ssize_t n) noexcept:
    """The value of ``p[:n]`` if it is 1 to 18 ASCII digits, else -1."""
    cdef long long value = 0
    cdef Py_ssize_t i
    if n < 1 or n > 18:
        return -1
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return -1
        value = value * 10 + (p[i] - 48)
    return value


def scan_request(bytes data, limits):
    """See :func:`shoal.dataplane.fastpath.scan_request` (the same result, compiled)."""
    max_body = limits.max_body_size
    return scan_request_within(
        data, limits.max_head_size, limits.max_headers, -1 if max_body is None else max_body
    )


cdef object scan_request_within(
    bytes data, Py_ssize_t max_head_size, Py_ssize_t max_headers, long long max_body
):
    """:func:`scan_request` with the limits as C numbers (``max_body`` -1: none); a C call for
    the compiled event loop (``shoal.dataplane._loop_c`` cimports it, see the ``.pxd``)."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos, target_start, target_end, fields_start, end, line, name_end = 0, value_end = 0
    cdef Py_ssize_t nfields = 0, specials = 0, host = 0, lengths = 0
    cdef Py_ssize_t length_at = 0, length_end = 0
    cdef long long length = -1
    cdef int kind
    cdef bytes method
    # The method and its space.
    if n < 16:
        return None
    if d[0] == b"G" and d[1] == b"E" and d[2] == b"T" and d[3] == b" ":
        method, pos = _M_GET, 4
    elif d[0] == b"H" and d[1] == b"E" and d[2] == b"A" and d[3] == b"D" and d[4] == b" ":
        method, pos = _M_HEAD, 5
    elif d[0] == b"P" and d[1] == b"O" and d[2] == b"S" and d[3] == b"T" and d[4] == b" ":
        method, pos = _M_POST, 5
    elif d[0] == b"P" and d[1] == b"U" and d[2] == b"T" and d[3] == b" ":
        method, pos = _M_PUT, 4
    elif d[0] == b"P" and d[1] == b"A" and d[2] == b"T" and d[3] == b"C" and d[4] == b"H" and d[5] == b" ":
        method, pos = _M_PATCH, 6
    elif n > 7 and d[0] == b"D" and d[1] == b"E" and d[2] == b"L" and d[3] == b"E" and d[4] == b"T" and d[5] == b"E" and d[6] == b" ":
        method, pos = _M_DELETE, 7
    elif n > 8 and d[0] == b"O" and d[1] == b"P" and d[2] == b"T" and d[3] == b"I" and d[4] == b"O" and d[5] == b"N" and d[6] == b"S" and d[7] == b" ":
        method, pos = _M_OPTIONS, 8
    else:
        return None
    # The target: "/" and target characters.
    if pos >= n or d[pos] != b"/":
        return None
    target_start = pos
    pos += 1
    while pos < n and _TARGET[d[pos]]:
        pos += 1
    target_end = pos
    if pos + 11 > n:
        return None
    if not (
        d[pos] == b" " and d[pos + 1] == b"H" and d[pos + 2] == b"T" and d[pos + 3] == b"T"
        and d[pos + 4] == b"P" and d[pos + 5] == b"/" and d[pos + 6] == b"1" and d[pos + 7] == b"."
        and d[pos + 8] == b"1" and d[pos + 9] == b"\r" and d[pos + 10] == b"\n"
    ):
        return None
    pos += 11
    fields_start = pos
    # The fields (at least one), then the empty line.
    while True:
        if pos + 1 < n and d[pos] == b"\r" and d[pos + 1] == b"\n":
            if nfields == 0:
                return None
            end = pos + 2
            break
        line = pos
        pos = _field(d, pos, n, &name_end, &value_end)
        if pos < 0:
            return None
        nfields += 1
        kind = _kind(d + line, name_end - line)
        if kind == F_OTHER or kind == F_CLOSE:  # "close" is special in responses only
            continue
        specials += 1
        if kind == F_HOST:
            host += 1
        elif kind == F_CONTENT_LENGTH:
            lengths += 1
            length_at = name_end + 2
            length_end = value_end
    if end > max_head_size:
        return None  # the general path decides (431)
    if end > 16 + 6 * max_headers and nfields > max_headers:
        return None  # too many fields (431)
    # Exactly one Host and at most one Content-Length, and nothing else the proxy acts on.
    if specials == 2:
        if host != 1 or lengths != 1:
            return None
        length = _digits(d + length_at, length_end - length_at)
        if length < 0:
            return None
        if max_body >= 0 and length > max_body:
            return None
    elif specials != 1 or host != 1:
        return None
    if n - end != (length if length > 0 else 0):
        return None
    # The fields as a tuple of (name, value) pairs, built in place (no list, no slice objects).
    cdef const char* text = <const char*>d
    cdef Py_ssize_t index = 0
    fields = PyTuple_New(nfields)
    pos = fields_start
    while pos < end - 2:
        line = pos
        pos = _field(d, pos, n, &name_end, &value_end)
        pair = PyTuple_New(2)
        _set_item(pair, 0, PyBytes_FromStringAndSize(text + line, name_end - line))
        _set_item(pair, 1, PyBytes_FromStringAndSize(text + name_end + 2, value_end - name_end - 2))
        _set_item(fields, index, pair)
        index += 1
    request = _new_request(
        method,
        PyBytes_FromStringAndSize(text + target_start, target_end - target_start),
        fields,
        "length" if length > 0 else "none",
        length if length >= 0 else None,
    )
    return request, end


def scan_response(bytes data, bint keep_alive):
    """See :func:`shoal.dataplane.fastpath.scan_response` (the same result, compiled)."""
    return scan_response_c(data, keep_alive)


cdef object scan_response_c(bytes data, bint keep_alive):
    """:func:`scan_response` as a C call for the compiled event loop (see the ``.pxd``)."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos, end, line, name_end = 0, value_end = 0, body, size, at
    cdef Py_ssize_t cut_from[2]
    cdef Py_ssize_t cut_to[2]
    cdef int cuts = 0, kind, status
    cdef long long length = -1
    cdef bint upstream_keep = True
    cdef unsigned char c
    cdef bytes out
    cdef char* o
    if n < 19:
        return None
    if not (
        d[0] == b"H" and d[1] == b"T" and d[2] == b"T" and d[3] == b"P" and d[4] == b"/"
        and d[5] == b"1" and d[6] == b"." and d[7] == b"1" and d[8] == b" "
        and d[9] >= b"1" and d[9] <= b"5" and d[10] >= b"0" and d[10] <= b"9"
        and d[11] >= b"0" and d[11] <= b"9" and d[12] == b" "
    ):
        return None
    status = (d[9] - 48) * 100 + (d[10] - 48) * 10 + (d[11] - 48)
    pos = 13
    while pos < n:
        c = d[pos]
        if c < 0x20 or c > 0x7E:
            break
        pos += 1
    if pos + 1 >= n or d[pos] != b"\r" or d[pos + 1] != b"\n":
        return None
    pos += 2
    # Parse the whole head first: the reference's pattern must match before any field counts.
    line = pos
    while True:
        if pos + 1 < n and d[pos] == b"\r" and d[pos + 1] == b"\n":
            end = pos + 2
            break
        pos = _field(d, pos, n, &name_end, &value_end)
        if pos < 0:
            return None
    if status < 200 or status >= 500 or status == 204 or status == 304:
        return None
    pos = line
    while pos < end - 2:
        line = pos
        pos = _field(d, pos, n, &name_end, &value_end)
        kind = _kind(d + line, name_end - line)
        if kind == F_OTHER or kind == F_HOST or kind == F_EXPECT or kind == F_FORWARDED:
            continue
        if kind == F_CONTENT_LENGTH:
            if length >= 0:
                return None
            length = _digits(d + name_end + 2, value_end - name_end - 2)
            if length < 0:
                return None
            continue
        if kind == F_CONNECTION:
            if _is(d + name_end + 2, value_end - name_end - 2, b"close", 5):
                upstream_keep = False
            elif not _is(d + name_end + 2, value_end - name_end - 2, b"keep-alive", 10):
                return None
        elif kind != F_KEEP_ALIVE:
            return None  # te, trailer, transfer-encoding, upgrade, close, proxy-*
        # Cut the hop-by-hop line with the CRLF before it; two at most.
        if cuts == 2:
            return None
        cut_from[cuts] = line - 2
        cut_to[cuts] = value_end
        cuts += 1
    if length < 0:
        return None
    body = n - end
    if body > length:
        return None
    # The head without the cut lines, "Connection: close" when the client's connection ends,
    # then the body bytes of this read: one allocation.
    size = end + body
    for at in range(cuts):
        size -= cut_to[at] - cut_from[at]
    if not keep_alive:
        size += 19
    out = PyBytes_FromStringAndSize(NULL, size)
    o = PyBytes_AS_STRING(out)
    pos = 0
    for at in range(cuts):
        memcpy(o, d + pos, cut_from[at] - pos)
        o += cut_from[at] - pos
        pos = cut_to[at]
    memcpy(o, d + pos, end - 2 - pos)
    o += end - 2 - pos
    if not keep_alive:
        memcpy(o, PyBytes_AS_STRING(_CLOSE_LINE), 19)
        o += 19
    memcpy(o, d + end - 2, 2 + body)
    return status, out, length - body, upstream_keep
