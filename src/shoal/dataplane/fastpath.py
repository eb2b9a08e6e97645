"""
The common exchange on bytes: a request head and a response head recognised and rewritten whole.

Theory of operation
-------------------
Most exchanges a reverse proxy carries look alike: a client sends a complete HTTP/1.1 head in
one read (with its whole ``Content-Length`` body, or none), and the upstream answers a head with
a ``Content-Length``. For those, the general path (a tokeniser, :func:`~shoal.dataplane.http1.analyse_request`,
event objects, hop-by-hop filtering, serialisation) does a lot of work to rebuild bytes that are
nearly the ones received. The two functions here decide, with one anchored regular expression
each (C code), whether a read is such a message, and if so give what the general path would
give, byte for byte:

* :func:`scan_request` accepts only a head that every request parser accepts with the same
  result: a known method, an origin-form target of plain characters, ``HTTP/1.1``, fields written
  ``Name: value`` (token names, visible ASCII values without surrounding space), exactly one
  ``Host``, at most one plain-digits ``Content-Length`` whose body is exactly the rest of the
  read, and none of the fields a proxy must act on (``Connection``, ``Keep-Alive``, ``TE``,
  ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Expect``, ``Proxy-*``, ``X-Forwarded-For``,
  ``X-Forwarded-Proto``). The upstream head is then the received head with the forwarding fields
  spliced in before its last line end, which is what
  :func:`~shoal.dataplane.proxy.upstream_request` writes for it.
* :func:`scan_response` accepts an ``HTTP/1.1`` response head written the same way, with a
  status from 200 to 499 other than 204 and 304, exactly one ``Content-Length`` and no
  hop-by-hop field except ``Connection: keep-alive|close`` and ``Keep-Alive``, which are cut
  out; ``Connection: close`` is added when the client connection will close. That is what
  :func:`~shoal.dataplane.proxy.client_response` writes for it.

Anything else gives ``None`` and the caller uses the general path, which decides everything
(smuggling defences, limits, errors): being conservative here costs speed, never behaviour.
``tests/dataplane/test_fastpath.py`` checks both functions against the general path on
generated heads (whenever a function accepts, the bytes are equal).
"""

import re
from typing import Final

from shoal.dataplane.http1 import Limits, Request

__all__ = ["forwarding_tail", "scan_request", "scan_response"]

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE: Final = rb"[\x21-\x7e][\x20-\x7e]*(?<! )"
"""Visible ASCII with inner spaces, no surrounding space (the lookbehind avoids backtracking)."""

_REQUEST: Final = re.compile(
    rb"(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*) HTTP/1\.1\r\n"
    rb"((?:" + _TOKEN + rb": " + _VALUE + rb"\r\n)+)\r\n"
).match
"""A whole strict request head (group 3: the field lines)."""

_REQUEST_SPECIAL: Final = re.compile(
    rb"\n(host|content-length|connection|keep-alive|te|trailer|transfer-encoding|upgrade|expect"
    rb"|proxy-[^:]*|x-forwarded-for|x-forwarded-proto): ([^\r]*)"
).findall
"""The fields (lower-cased head) that the general path looks at or rewrites."""

_FIELDS: Final = re.compile(rb"([^:\r\n]+): ([^\r\n]*)\r\n").findall

_RESPONSE: Final = re.compile(
    rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([\x20-\x7e]*)\r\n((?:"
    + _TOKEN
    + rb": "
    + _VALUE
    + rb"\r\n)*)\r\n"
).match
"""A whole strict response head (group 3: the field lines)."""

_RESPONSE_SPECIAL: Final = re.compile(
    rb"\r\n(content-length|connection|keep-alive|te|trailer|transfer-encoding|upgrade|close"
    rb"|proxy-[^:]*)"
    rb": ([^\r]*)"
).finditer

_MAX_FIELD_LINE: Final = 6
"""The shortest field line the pattern accepts (``a: b`` and CRLF): bounds the field count."""


def forwarding_tail(peer: str, scheme: bytes, x_forwarded_for: bool) -> bytes:
    """What ends every upstream head of one client connection (the forwarding fields)."""
    if not x_forwarded_for:
        return b"\r\n"
    return b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n\r\n" % (peer.encode("ascii"), scheme)


def scan_request(data: bytes, limits: Limits) -> tuple[Request, int] | None:
    """The request in ``data`` and where its body starts, if ``data`` is exactly one common
    request (see the module docstring) within ``limits``; ``None`` otherwise."""
    match = _REQUEST(data)
    if match is None:
        return None
    end = match.end()
    if end > limits.max_head_size:
        return None  # the general path decides (431)
    if end > 16 + _MAX_FIELD_LINE * limits.max_headers and (
        data.count(b"\r\n", 0, end) - 2 > limits.max_headers
    ):
        return None  # too many fields (431): only a head this long can have that many
    start = match.start(3)
    special = _REQUEST_SPECIAL(data[start - 1 : end].lower())
    length = None
    if len(special) != 1:
        if len(special) != 2:
            return None
        (first, value_a), (second, value_b) = special
        if first == b"host" and second == b"content-length":
            value = value_b
        elif first == b"content-length" and second == b"host":
            value = value_a
        else:
            return None
        if not value.isdigit() or len(value) > 18:
            return None
        length = int(value)
        if limits.max_body_size is not None and length > limits.max_body_size:
            return None
    elif special[0][0] != b"host":
        return None
    if len(data) - end != (length or 0):
        return None
    request = Request(
        match[1],
        match[2],
        b"1.1",
        tuple(_FIELDS(data, start, end)),
        "length" if length else "none",
        length,
        True,
        False,
        None,
    )
    return request, end


def scan_response(data: bytes, keep_alive: bool) -> tuple[int, bytes, int, bool] | None:
    """For the first read of a response: ``(status, bytes for the client, body bytes still to
    come, upstream keep-alive)`` if ``data`` starts with a common response head (see the module
    docstring) and holds no more than its body; ``None`` otherwise.

    ``keep_alive`` says whether the client connection stays open after this response. The
    caller has checked that the request was an HTTP/1.1 one whose method is not ``HEAD``.
    """
    match = _RESPONSE(data)
    if match is None:
        return None
    status = int(match[1])
    if status < 200 or status >= 500 or status == 204 or status == 304:
        return None
    end = match.end()
    head = data[:end]
    lowered = head.lower()
    length = -1
    upstream_keep = True
    cut_from = cut_to = 0
    cuts = 0
    for found in _RESPONSE_SPECIAL(lowered, match.start(3) - 2):
        name = found[1]
        if name == b"content-length":
            value = found[2]
            if length >= 0 or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
            continue
        if name == b"connection":
            value = found[2]
            if value == b"close":
                upstream_keep = False
            elif value != b"keep-alive":
                return None
        elif name != b"keep-alive":
            return None
        # Cut the hop-by-hop line (its CRLF is the one before it); two at most, adjacent or not.
        if cuts == 0:
            cut_from, cut_to = found.start(), found.end()
        elif cuts == 1:
            head = head[:cut_from] + head[cut_to : found.start()] + head[found.end() :]
            cut_from = cut_to = 0
        else:
            return None
        cuts += 1
    if length < 0:
        return None
    body = len(data) - end
    if body > length:
        return None
    if cut_to:
        head = head[:cut_from] + head[cut_to:]
    if not keep_alive:
        head = head[:-2] + b"Connection: close\r\n\r\n"
    if body:
        head += data[end:]
    return status, head, length - body, upstream_keep
