"""memcached text protocol core: requests as transcripts and properties, response scanning."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from shoal.components.ambassadors import memcache
from shoal.components.ambassadors.memcache import BadRequest, Request, RequestParser


def feed_all(parser: RequestParser, stream: bytes, cuts: list[int]) -> list[Request | BadRequest]:
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


def test_transcript_of_every_supported_command() -> None:
    parser = RequestParser()
    for raw, expected in TRANSCRIPT:
        assert parser.feed(raw) == [expected], raw


@given(st.data())
def test_any_chunking_gives_the_same_requests(data: st.DataObject) -> None:
    picks = data.draw(st.lists(st.sampled_from(TRANSCRIPT), min_size=1, max_size=10))
    stream = b"".join(raw for raw, _ in picks)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=15))
    assert feed_all(RequestParser(), stream, cuts) == [req for _, req in picks]


# Built from printable bytes directly: filtering random binary rejects most draws (a health check).
keys = st.lists(st.integers(33, 126), min_size=1, max_size=30).map(bytes)


@given(
    keys, st.integers(0, 2**32 - 1), st.integers(-5, 10**6), st.binary(max_size=300), st.booleans()
)
def test_storage_round_trip(
    key: bytes, flags: int, exptime: int, value: bytes, noreply: bool
) -> None:
    line = b"set %b %d %d %d%b\r\n" % (
        key,
        flags,
        exptime,
        len(value),
        b" noreply" if noreply else b"",
    )
    raw = line + value + b"\r\n"
    assert RequestParser().feed(raw) == [Request(b"set", [key], raw, not noreply)]


def test_bad_lines_get_memcached_errors_and_the_stream_goes_on() -> None:
    parser = RequestParser(max_value_bytes=8)
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
    assert [e.reply if isinstance(e, BadRequest) else e for e in events] == [
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


def test_endless_line_is_fatal() -> None:
    parser = RequestParser(max_line_bytes=100)
    events = parser.feed(b"get " + b"k" * 200)
    assert events == [BadRequest(b"CLIENT_ERROR line too long\r\n", fatal=True)]


values = st.dictionaries(keys, st.binary(max_size=50), max_size=5)


@given(values, st.integers(0, 500))
def test_response_end_for_retrievals(found: dict[bytes, bytes], cut: int) -> None:
    body = b"".join(b"VALUE %b 0 %d\r\n%b\r\n" % (k, len(v), v) for k, v in found.items())
    response = body + b"END\r\n"
    stream = response + b"STORED\r\n"
    assert memcache.response_end(stream, 0, True) == len(response)
    assert memcache.response_end(stream, len(response), False) == len(stream)
    assert memcache.response_end(response[: min(cut, len(response) - 1)], 0, True) == -1
    blocks = memcache.value_blocks(response)
    assert blocks is not None
    assert sorted(blocks) == sorted(found)


def test_an_error_line_ends_a_retrieval() -> None:
    raw = b"SERVER_ERROR out of memory\r\n"
    assert memcache.response_end(raw, 0, True) == len(raw)
    assert memcache.value_blocks(raw) is None
