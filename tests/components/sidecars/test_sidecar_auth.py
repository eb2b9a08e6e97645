"""The auth sidecar: token bucket, rate limiter, htpasswd and token parsing, the gate's decisions
(pure), and 401/429 behaviour against a real app on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.components.sidecars.auth import (
    Allow,
    AuthSettings,
    CredentialsError,
    Deny,
    Gate,
    Limit,
    RateLimiter,
    TokenBucket,
    auth_sidecar,
    make_gate,
    parse_htpasswd,
    parse_rate,
    parse_tokens,
)
from tests.components.http_app import App, request


def sha256_line(user: str, password: str) -> str:
    digest = base64.b64encode(hashlib.sha256(password.encode()).digest()).decode()
    return f"{user}:{{SHA256}}{digest}"


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_parse_rate() -> None:
    assert parse_rate("100/s") == 100
    assert parse_rate("60/m") == 1
    assert parse_rate("7200/h") == 2
    assert parse_rate("5") == 5
    for bad in ("", "x/s", "10/fortnight", "0/s", "-1/s", "nan/s"):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)


def test_token_bucket_transcript() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token takes half a second
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert [bucket.take(10.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]
    assert bucket.take(9.0) > 0  # a clock going back never adds tokens


@given(
    rate=st.floats(0.5, 1000),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_token_bucket_never_admits_more_than_burst_plus_rate(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=float(burst))
    now = admitted = 0.0
    for gap in gaps:
        now += gap
        if bucket.take(now) == 0.0:
            admitted += 1
    assert admitted <= burst + rate * now + 1e-6


def test_rate_limiter_per_client_and_global() -> None:
    per_client = RateLimiter(rate=1.0, burst=1, per="client", max_clients=2)
    assert per_client.check("a", 0) == 0
    assert per_client.check("b", 0) == 0
    assert per_client.check("a", 0) > 0  # a's bucket is empty, b's is its own
    per_client.check("c", 0)  # evicts the least recently seen: b
    assert len(per_client) == 2
    shared = RateLimiter(rate=1.0, burst=1, per="global")
    assert shared.check("a", 0) == 0
    assert shared.check("b", 0) == pytest.approx(1.0)


def test_htpasswd_formats_and_errors() -> None:
    sha1 = base64.b64encode(hashlib.sha1(b"s3cret").digest()).decode()
    users = parse_htpasswd(
        "# users\n"
        + sha256_line("alice", "wonder")
        + f"\nbob:{{SHA}}{sha1}\ncarol:{{PLAIN}}pa:ss\n"
    )
    assert users["alice"].matches(b"wonder")
    assert not users["alice"].matches(b"wonde")
    assert users["bob"].matches(b"s3cret")
    assert users["carol"].matches(b"pa:ss")
    assert "pa:ss" not in repr(users)
    cases = {
        "alice": r"x:1: expected user:\{SCHEME\}value",
        "a:$2y$05$abcdefghijklmnopqrstuv": "bcrypt/crypt hashes are not supported",
        "a:{MD5}xyz": r"unknown scheme \{MD5\}",
        "a:{SHA256}notbase64!": "base64 of a 32-byte digest",
        "a:plain": r"must start with \{SHA256\}",
        "a:{PLAIN}x\na:{PLAIN}y": "x:2: user 'a' appears twice",
    }
    for text, message in cases.items():
        with pytest.raises(CredentialsError, match=message):
            parse_htpasswd(text, "x")


@given(st.text(max_size=200))
def test_htpasswd_parser_never_crashes(text: str) -> None:
    try:
        users = parse_htpasswd(text)
    except CredentialsError as error:
        assert str(error).startswith("<htpasswd>")  # noqa: PT017 -- located, never a crash
    else:
        assert all(user and ":" not in user for user in users)


def test_tokens_file() -> None:
    tokens = parse_tokens('# static tokens\nabc123,alice,1001,"admins,dev"\nxyz\n')
    assert [user for _, user in tokens] == ["alice", "token-3"]
    with pytest.raises(CredentialsError, match="t:1: a token must be printable"):
        parse_tokens("bad token\n", "t")
    with pytest.raises(CredentialsError, match="no tokens"):
        parse_tokens("# none\n")


def test_gate_decisions() -> None:
    tokens = Gate(tokens=parse_tokens("abc,alice\ndef,bob\n"))
    assert tokens.decide(b"Bearer abc", "c", 0) == Allow("alice")
    assert tokens.decide(b"bearer  def ", "c", 0) == Allow("bob")
    assert tokens.decide(b"Bearer abd", "c", 0) == Deny("unknown token")
    assert tokens.decide(None, "c", 0) == Deny("no credentials")
    assert tokens.decide(basic("alice", "abc"), "c", 0) == Deny("unsupported scheme")
    assert tokens.challenge() == b'Bearer realm="shoal"'
    users = Gate(users=parse_htpasswd(sha256_line("alice", "wonder")), realm='my "app"')
    assert users.decide(basic("alice", "wonder"), "c", 0) == Allow("alice")
    assert users.decide(basic("alice", "wrong"), "c", 0) == Deny("wrong user or password")
    assert users.decide(basic("mallory", "wonder"), "c", 0) == Deny("wrong user or password")
    assert users.decide(b"Basic !!!", "c", 0) == Deny("malformed basic credentials")
    assert users.decide(b"Basic " + base64.b64encode(b"nocolon"), "c", 0) == Deny(
        "malformed basic credentials"
    )
    assert users.challenge() == b'Basic realm="my \\"app\\"", charset="UTF-8"'
    limited = Gate(tokens=parse_tokens("abc"), limiter=RateLimiter(1.0, 1))
    assert limited.decide(b"Bearer abc", "c", 0) == Allow("token-1")
    # The limit comes first: a wrong guess costs a token too.
    assert limited.decide(b"Bearer nope", "c", 0) == Limit(1.0)
    assert limited.decide(b"Bearer nope", "d", 0) == Deny("unknown token")


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to do"):
        make_gate(AuthSettings())
    with pytest.raises(CredentialsError, match=r"missing\.txt: no such file"):
        make_gate(AuthSettings(token_file=str(tmp_path / "missing.txt")))


async def test_tokens_401_and_forwarding(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("t0ken-abc,alice\n")
    async with App() as app:
        settings = AuthSettings(upstream=app.address, token_file=str(tmp_path / "tokens"))
        server, _ = auth_sidecar(settings)
        await server.start("127.0.0.1", 0)
        try:
            host, port = server.address
            status, headers, _ = await request(host, port)
            assert status == 401
            assert headers["www-authenticate"] == 'Bearer realm="shoal"'
            assert headers["connection"] == "close"
            status, _, _ = await request(host, port, headers={"Authorization": "Bearer wrong"})
            assert status == 401
            assert app.requests == []  # refused requests never reach the app
            status, _, body = await request(
                host,
                port,
                "/x",
                headers={"Authorization": "Bearer t0ken-abc", "X-Forwarded-User": "root"},
            )
            assert status == 200
        finally:
            await server.shutdown(2.0)
    seen = json.loads(body)["headers"]
    assert "authorization" not in seen  # the credential stays at the sidecar
    assert seen["x-forwarded-user"] == "alice"  # and the client's claim was replaced


async def test_basic_auth_and_rate_limit_429(tmp_path: Path) -> None:
    (tmp_path / "htpasswd").write_text(sha256_line("alice", "wonder") + "\n")
    async with App() as app:
        settings = AuthSettings(
            upstream=app.address,
            basic_auth_file=str(tmp_path / "htpasswd"),
            rate=0.01,  # one a hundred seconds: the burst is all a test sees
            burst=3,
        )
        server, _ = auth_sidecar(settings)
        await server.start("127.0.0.1", 0)
        try:
            host, port = server.address
            good = {"Authorization": basic("alice", "wonder").decode()}
            statuses = [(await request(host, port, headers=good))[0] for _ in range(3)]
            assert statuses == [200, 200, 200]
            status, headers, _ = await request(host, port, headers=good)
            assert status == 429
            assert 1 <= int(headers["retry-after"]) <= 100
            status, _, _ = await request(host, port)
            assert status == 429  # the limit comes before authentication
        finally:
            await server.shutdown(2.0)
    assert len(app.requests) == 3
