"""memcached text protocol core: requests as transcripts and properties, response scanning."""

from __future__ import annotations

import itertools
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.components.ambassadors import _memcache, memcache
from shoal.components.ambassadors.memcache import BadRequest, Request

MODULES = pytest.mark.parametrize("module", [memcache, _memcache], ids=["python", "compiled"])
"""The parser tests run over memcache.py and its compiled twin (never skipped)."""


def feed_all(
    parser: memcache.RequestParser, stream: bytes, cuts: list[int]
) -> list[Request | BadRequest]:
    out: list[Request | BadRequest] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for a, b in itertools.pairwise(bounds):
        out.extend(parser.feed(stream[a:b]))
    return out


TRANSCRIPT = [
    (b"get a b c\r\n", Request(b"get", [b"a", b"b", b"c"], b"get a b c\r\n")),
    (b"gets k\r\n", Request(b"gets", [b"k"], b"gets k\r\n")),
    (b"gat 10 k1 k2\r\n", Request(b"gat", [b"k1", b"k2"], b"gat 10 k1 k2\r\n", True, b"10")),
    (b"set k 5 0 3\r\nabc\r\n", Request(b"set", [b"k"], b"set k 5 0 3\r\nabc\r\n")),
    (
        b"add k 0 0 0 noreply\r\n\r\n",
        Request(b"add", [b"k"], b"add k 0 0 0 noreply\r\n\r\n", False),
    ),
    (b"cas k 0 -1 2 99\r\nhi\r\n", Request(b"cas", [b"k"], b"cas k 0 -1 2 99\r\nhi\r\n")),
    (b"append k 0 0 1\r\nz\r\n", Request(b"append", [b"k"], b"append k 0 0 1\r\nz\r\n")),
    (b"prepend k 0 0 1\r\nz\r\n", Request(b"prepend", [b"k"], b"prepend k 0 0 1\r\nz\r\n")),
    (b"replace k 0 0 1\r\nz\r\n", Request(b"replace", [b"k"], b"replace k 0 0 1\r\nz\r\n")),
    (b"delete k\r\n", Request(b"delete", [b"k"], b"delete k\r\n")),
    (b"delete k noreply\r\n", Request(b"delete", [b"k"], b"delete k noreply\r\n", False)),
    (b"incr n 5\r\n", Request(b"incr", [b"n"], b"incr n 5\r\n")),
    (b"decr n 1 noreply\r\n", Request(b"decr", [b"n"], b"decr n 1 noreply\r\n", False)),
    (b"touch k 100\r\n", Request(b"touch", [b"k"], b"touch k 100\r\n")),
    (b"version\r\n", Request(b"version", [], b"version\r\n")),
    (b"quit\r\n", Request(b"quit", [], b"quit\r\n")),
]


@MODULES
def test_transcript_of_every_supported_command(module: ModuleType) -> None:
    parser = module.RequestParser()
    for raw, expected in TRANSCRIPT:
        assert parser.feed(raw) == [expected], raw


@MODULES
@given(st.data())
def test_any_chunking_gives_the_same_requests(module: ModuleType, data: st.DataObject) -> None:
    picks = data.draw(st.lists(st.sampled_from(TRANSCRIPT), min_size=1, max_size=10))
    stream = b"".join(raw for raw, _ in picks)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=15))
    assert feed_all(module.RequestParser(), stream, cuts) == [req for _, req in picks]


# Built from printable bytes directly: filtering random binary rejects most draws (a health check).
keys = st.lists(st.integers(33, 126), min_size=1, max_size=30).map(bytes)


@MODULES
@given(
    keys, st.integers(0, 2**32 - 1), st.integers(-5, 10**6), st.binary(max_size=300), st.booleans()
)
def test_storage_round_trip(
    module: ModuleType, key: bytes, flags: int, exptime: int, value: bytes, noreply: bool
) -> None:
    line = b"set %b %d %d %d%b\r\n" % (
        key,
        flags,
        exptime,
        len(value),
        b" noreply" if noreply else b"",
    )
    raw = line + value + b"\r\n"
    assert module.RequestParser().feed(raw) == [Request(b"set", [key], raw, not noreply)]


@MODULES
def test_bad_lines_get_memcached_errors_and_the_stream_goes_on(module: ModuleType) -> None:
    parser = module.RequestParser(max_value_bytes=8)
    stream = (
        b"bogus\r\n"  # unknown command
        b"\r\n"  # empty line
        b"get\r\n"  # no key
        b"get " + b"k" * 251 + b"\r\n"  # key too long
        b"set k 0 0\r\n"  # missing length
        b"set k x 0 1\r\nz\r\n"  # bad flags: the data block is skipped too
        b"set k 0 0 20\r\n" + b"v" * 20 + b"\r\n"  # too large: skipped as it streams
        b"set k 0 0 2\r\nabcd\r\n"  # the block does not end where its length says
        b"incr n x\r\n"
        b"stats\r\n"
        b"version extra\r\n"
        b"get ok\r\n"
    )
    events = feed_all(parser, stream, list(range(0, len(stream), 3)))
    assert [e.reply if isinstance(e, (BadRequest, module.BadRequest)) else e for e in events] == [
        b"ERROR\r\n",
        b"ERROR\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
        b"SERVER_ERROR object too large for cache\r\n",
        b"CLIENT_ERROR bad data chunk\r\n",
        b"CLIENT_ERROR invalid numeric delta argument\r\n",
        b"SERVER_ERROR 'stats' is not supported by the ambassador: statistics are per server\r\n",
        b"ERROR\r\n",
        Request(b"get", [b"ok"], b"get ok\r\n"),
    ]


@MODULES
def test_endless_line_is_fatal(module: ModuleType) -> None:
    parser = module.RequestParser(max_line_bytes=100)
    events = parser.feed(b"get " + b"k" * 200)
    assert events == [BadRequest(b"CLIENT_ERROR line too long\r\n", fatal=True)]


values = st.dictionaries(keys, st.binary(max_size=50), max_size=5)


@MODULES
@given(values, st.integers(0, 500))
def test_response_end_for_retrievals(
    module: ModuleType, found: dict[bytes, bytes], cut: int
) -> None:
    body = b"".join(b"VALUE %b 0 %d\r\n%b\r\n" % (k, len(v), v) for k, v in found.items())
    response = body + b"END\r\n"
    stream = response + b"STORED\r\n"
    assert module.response_end(stream, 0, True) == len(response)
    assert module.response_end(stream, len(response), False) == len(stream)
    assert module.response_end(response[: min(cut, len(response) - 1)], 0, True) == -1
    blocks = memcache.value_blocks(response)
    assert blocks is not None
    assert sorted(blocks) == sorted(found)


@MODULES
def test_an_error_line_ends_a_retrieval(module: ModuleType) -> None:
    raw = b"SERVER_ERROR out of memory\r\n"
    assert module.response_end(raw, 0, True) == len(raw)
    assert memcache.value_blocks(raw) is None


memcache_part = st.one_of(
    st.sampled_from([line for line, _ in TRANSCRIPT]),
    st.sampled_from(
        [
            b"get\r\n",
            b"set k 0 0 3\r\nabcd\r\n",
            b"set k 0 0 99\r\n" + b"v" * 99 + b"\r\n",
            b"incr n x\r\n",
            b"stats\r\n",
            b"bogus\r\n",
            b"get " + b"k" * 300 + b"\r\n",
            b"\r\n",
            b"set k 0 0 -1\r\n",
            b"gat x k\r\n",
        ]
    ),
    st.binary(max_size=12),
)


@given(st.lists(memcache_part, min_size=1, max_size=10), st.data())
def test_the_compiled_parser_agrees_on_arbitrary_input(
    parts: list[bytes], data: st.DataObject
) -> None:
    """Malformed, oversized and split input: the compiled parser gives the pure one's answers."""
    stream = b"".join(parts)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    limits = {"max_value_bytes": 50, "max_line_bytes": 200}
    pure = feed_all(memcache.RequestParser(**limits), stream, cuts)
    assert feed_all(_memcache.RequestParser(**limits), stream, cuts) == pure


@given(st.lists(memcache_part, min_size=1, max_size=6), st.booleans(), st.integers(0, 300))
def test_the_compiled_response_scanner_agrees(parts: list[bytes], retrieval: bool, at: int) -> None:
    stream = b"".join(parts)
    at = min(at, len(stream))

    def scan(module: ModuleType) -> object:
        try:
            return module.response_end(stream, at, retrieval)
        except (memcache.ResponseError, _memcache.ResponseError) as error:
            return ("error", str(error))

    assert scan(_memcache) == scan(memcache)
