"""
``shoal sidecar auth``: bearer-token or basic authentication and a rate limit in front of an app.

Theory of operation
-------------------
The sidecar is the data plane's :class:`~shoal.dataplane.driver.ProxyServer` with an ``admit``
filter: every request head goes through :meth:`Gate.decide` (a pure core: headers, client
address and the time in, a decision out) before it is routed to the one upstream.

1. **Rate limit** (first, so that guessing passwords is limited too): a token bucket per client
   address (``per="client"``) or one for everyone (``per="global"``) refills ``rate`` tokens a
   second up to ``burst``; a request takes one. An empty bucket answers ``429 Too Many Requests``
   with ``Retry-After`` (whole seconds, rounded up) and the request never reaches the app. The
   per-client table keeps at most ``max_clients`` buckets, forgetting the least recently seen
   (a forgotten client starts with a full bucket, which only ever errs towards letting it in).
2. **Authentication**: ``Authorization: Bearer T`` is checked against a token file (Kubernetes'
   static token file format, ``token,user[,uid[,"group,..."]]``, or one token per line);
   ``Authorization: Basic`` against an htpasswd-like file (``user:{SHA256}base64``,
   ``user:{SHA}base64`` as ``htpasswd -s`` writes, or ``user:{PLAIN}password``). Failure answers
   ``401 Unauthorized`` with ``WWW-Authenticate`` naming the scheme and realm.
   Every comparison is between SHA-256 digests with :func:`hmac.compare_digest`, and every
   stored token is compared (no early exit), so timing does not reveal how much of a secret
   matched; an unknown user costs the same as a wrong password.
3. **Forwarding**: the ``Authorization`` field is removed (the app never sees a credential) and
   ``X-Forwarded-User`` names the user (any such field from the client is removed first).

A refused request's connection is closed after the answer. Nothing here logs a header.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import math
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, field_validator

from shoal.components.sidecars._serve import parse_address, serve_until_stopped
from shoal.dataplane.driver import Address, ProxyServer, ProxySettings
from shoal.dataplane.http1 import Request, serialize_response_head
from shoal.errors import PermanentError
from shoal.model._base import ShoalModel

__all__ = [
    "Allow",
    "AuthConfig",
    "AuthSettings",
    "CredentialsError",
    "Deny",
    "Gate",
    "Limit",
    "RateLimiter",
    "TokenBucket",
    "auth_sidecar",
    "parse_htpasswd",
    "parse_rate",
    "parse_tokens",
    "run_auth_sidecar",
]

_SECONDS: Final = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


class CredentialsError(PermanentError):
    """A token or htpasswd file cannot be used (the message names the file and line)."""


# --- rate limiting (pure) -----------------------------------------------------------------------


def parse_rate(text: str) -> float:
    """``100/s``, ``6000/m``, ``10/h`` (or a bare number: per second) as requests per second."""
    count, _, unit = text.strip().partition("/")
    try:
        value = float(count)
    except ValueError:
        raise ValueError(f"rate {text!r}: must be N/s, N/m or N/h, e.g. 100/s") from None
    per = _SECONDS.get(unit.strip() or "s")
    if per is None or not value > 0 or not math.isfinite(value):
        raise ValueError(f"rate {text!r}: must be a positive N/s, N/m or N/h, e.g. 100/s")
    return value / per


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one will be there."""
        if self.tokens < 0:  # first use: full
            self.tokens, self.stamp = self.burst, now
        else:
            elapsed = max(0.0, now - self.stamp)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets per key (a client address), or one shared one; see the module docstring."""

    __slots__ = ("_buckets", "burst", "max_clients", "per", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        per: Literal["client", "global"] = "client",
        max_clients: int = 65536,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.per = per
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, client: str, now: float) -> float:
        """0.0 to let the request in, else seconds to wait (for ``Retry-After``)."""
        key = client if self.per == "client" else ""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(self.rate, float(self.burst))
            if len(buckets) > self.max_clients:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
        return bucket.take(now)


# --- credentials (pure) -------------------------------------------------------------------------


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True, slots=True)
class _Password:
    scheme: Literal["sha256", "sha1", "plain"]
    stored: bytes = field(repr=False)
    """The decoded hash (sha256/sha1), or the SHA-256 of the plain password."""

    def matches(self, password: bytes) -> bool:
        if self.scheme == "sha256":
            return hmac.compare_digest(_digest(password), self.stored)
        if self.scheme == "sha1":
            computed = hashlib.sha1(password, usedforsecurity=False).digest()
            return hmac.compare_digest(computed, self.stored)
        return hmac.compare_digest(_digest(password), self.stored)


def parse_htpasswd(text: str, source: str = "<htpasswd>") -> dict[str, _Password]:
    """``user:{SHA256}b64``, ``user:{SHA}b64`` or ``user:{PLAIN}pw`` lines; ``#`` comments."""
    users: dict[str, _Password] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, value = line.partition(":")
        where = f"{source}:{number}"
        if not sep or not user:
            raise CredentialsError(f"{where}: expected user:{{SCHEME}}value")
        if user in users:
            raise CredentialsError(f"{where}: user {user!r} appears twice")
        if value.startswith(("$2a$", "$2b$", "$2y$", "$apr1$", "$1$", "$5$", "$6$")):
            raise CredentialsError(
                f"{where}: user {user!r}: bcrypt/crypt hashes are not supported; use "
                "{SHA256}base64(sha256(password)) (or {SHA}, as `htpasswd -s` writes)"
            )
        scheme, close, rest = value.partition("}")
        if not value.startswith("{") or not close:
            raise CredentialsError(
                f"{where}: user {user!r}: the password must start with {{SHA256}}, {{SHA}} or {{PLAIN}}"
            )
        name = scheme[1:].upper()
        if name == "PLAIN":
            users[user] = _Password("plain", _digest(rest.encode()))
            continue
        size = {"SHA256": 32, "SHA": 20}.get(name)
        if size is None:
            raise CredentialsError(
                f"{where}: user {user!r}: unknown scheme {{{name}}}; use {{SHA256}}, {{SHA}} or {{PLAIN}}"
            )
        try:
            decoded = base64.b64decode(rest, validate=True)
        except binascii.Error:
            decoded = b""
        if len(decoded) != size:
            raise CredentialsError(
                f"{where}: user {user!r}: {{{name}}} needs the base64 of a {size}-byte digest"
            )
        users[user] = _Password("sha256" if name == "SHA256" else "sha1", decoded)
    return users


def parse_tokens(text: str, source: str = "<tokens>") -> list[tuple[bytes, str]]:
    """Token digests and user names from ``token,user[,...]`` or bare-token lines."""
    tokens: list[tuple[bytes, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        token, _, rest = line.partition(",")
        token = token.strip()
        user = rest.split(",", 1)[0].strip().strip('"') or f"token-{number}"
        if not token or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise CredentialsError(
                f"{source}:{number}: a token must be printable ASCII without spaces"
            )
        tokens.append((_digest(token.encode()), user))
    if not tokens:
        raise CredentialsError(f"{source}: no tokens")
    return tokens


@dataclass(frozen=True, slots=True)
class Allow:
    """Forward; ``user`` is the authenticated user (empty without authentication)."""

    user: str = ""


@dataclass(frozen=True, slots=True)
class Deny:
    """401: no or wrong credentials."""

    reason: str


@dataclass(frozen=True, slots=True)
class Limit:
    """429: over the rate; retry after ``retry_after`` seconds."""

    retry_after: float


Decision = Allow | Deny | Limit


class Gate:
    """The decision for one request head; see the module docstring."""

    def __init__(
        self,
        *,
        tokens: list[tuple[bytes, str]] | None = None,
        users: Mapping[str, _Password] | None = None,
        limiter: RateLimiter | None = None,
        realm: str = "shoal",
    ) -> None:
        self.tokens = tokens
        self.users = users
        self.limiter = limiter
        self.realm = realm
        self._dummy = _Password("sha256", _digest(b"\x00unknown user"))

    def decide(self, authorization: bytes | None, client: str, now: float) -> Decision:
        if self.limiter is not None:
            wait = self.limiter.check(client, now)
            if wait > 0:
                return Limit(wait)
        if self.tokens is None and self.users is None:
            return Allow()
        if authorization is None:
            return Deny("no credentials")
        scheme, _, credentials = authorization.strip().partition(b" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == b"bearer" and self.tokens is not None:
            presented = _digest(credentials)
            user = ""
            for stored, name in self.tokens:  # all of them: no early exit
                if hmac.compare_digest(presented, stored):
                    user = name
            return Allow(user) if user else Deny("unknown token")
        if scheme == b"basic" and self.users is not None:
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except binascii.Error:
                return Deny("malformed basic credentials")
            raw_user, sep, password = decoded.partition(b":")
            if not sep:
                return Deny("malformed basic credentials")
            user_name = raw_user.decode("utf-8", "replace")
            entry = self.users.get(user_name)
            ok = (entry or self._dummy).matches(password)
            return Allow(user_name) if ok and entry is not None else Deny("wrong user or password")
        return Deny("unsupported scheme")

    def challenge(self) -> bytes:
        """The ``WWW-Authenticate`` value."""
        realm = self.realm.replace("\\", "\\\\").replace('"', '\\"')
        if self.tokens is not None:
            return f'Bearer realm="{realm}"'.encode()
        return f'Basic realm="{realm}", charset="UTF-8"'.encode()


def _answer(status: int, reason: bytes, headers: list[tuple[bytes, bytes]], text: bytes) -> bytes:
    body = text + b"\n"
    headers = [
        *headers,
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
        (b"Connection", b"close"),
    ]
    return serialize_response_head(status, reason, headers) + body


# --- settings and the driver --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Everything ``shoal sidecar auth`` can be told."""

    listen: str = "127.0.0.1:8081"
    """Where to accept HTTP."""
    upstream: str = "127.0.0.1:8080"
    """The app."""
    token_file: str | None = None
    """Bearer tokens: ``token,user[,uid[,groups]]`` lines (Kubernetes' static token file)."""
    basic_auth_file: str | None = None
    """Basic users: ``user:{SHA256}base64`` / ``{SHA}`` / ``{PLAIN}`` lines."""
    realm: str = "shoal"
    """The realm in ``WWW-Authenticate``."""
    rate: float | None = None
    """Requests a second allowed (per client or globally); None: no limit."""
    burst: int | None = None
    """Requests allowed at once before the rate applies (default: the rate, at least 1)."""
    per: Literal["client", "global"] = "client"
    """One bucket per client address, or one for all."""
    proxy: ProxySettings = field(default_factory=ProxySettings)
    """The data plane's settings."""


class AuthConfig(ShoalModel):
    """``--config`` file of ``shoal sidecar auth``."""

    listen: str = "127.0.0.1:8081"
    upstream: str = "127.0.0.1:8080"
    token_file: str | None = None
    basic_auth_file: str | None = None
    realm: str = "shoal"
    rate: str | None = None
    """``100/s``, ``6000/m`` or ``10/h``."""
    burst: int | None = Field(default=None, ge=1)
    per: Literal["client", "global"] = "client"

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    def settings(self) -> AuthSettings:
        return AuthSettings(
            listen=self.listen,
            upstream=self.upstream,
            token_file=self.token_file,
            basic_auth_file=self.basic_auth_file,
            realm=self.realm,
            rate=parse_rate(self.rate) if self.rate is not None else None,
            burst=self.burst,
            per=self.per,
        )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CredentialsError(f"{path}: cannot read: {error}") from None


def make_gate(settings: AuthSettings) -> Gate:
    """The gate of ``settings``, its files read (raises :class:`CredentialsError`)."""
    if settings.token_file and settings.basic_auth_file:
        raise ValueError("give one of a token file or a basic-auth file, not both")
    if settings.token_file is None and settings.basic_auth_file is None and settings.rate is None:
        raise ValueError("nothing to do: give a token file, a basic-auth file or a rate")
    tokens = (
        parse_tokens(_read(settings.token_file), settings.token_file)
        if settings.token_file
        else None
    )
    users = (
        parse_htpasswd(_read(settings.basic_auth_file), settings.basic_auth_file)
        if settings.basic_auth_file
        else None
    )
    limiter = None
    if settings.rate is not None:
        burst = settings.burst or max(1, math.ceil(settings.rate))
        limiter = RateLimiter(settings.rate, burst, settings.per)
    return Gate(tokens=tokens, users=users, limiter=limiter, realm=settings.realm)


_STRIPPED: Final = frozenset({b"authorization", b"x-forwarded-user"})


def auth_sidecar(settings: AuthSettings) -> tuple[ProxyServer, Gate]:
    """The proxy of an auth sidecar (not started) and its gate."""
    upstream: Address = parse_address(settings.upstream)
    parse_address(settings.listen)
    gate = make_gate(settings)
    clock = time.monotonic
    challenge = gate.challenge()

    def admit(request: Request, client: str) -> Request | bytes:
        authorization = None
        for name, value in request.headers:
            if name.lower() == b"authorization":
                authorization = value
                break
        decision = gate.decide(authorization, client, clock())
        if isinstance(decision, Limit):
            seconds = b"%d" % max(1, math.ceil(decision.retry_after))
            return _answer(
                429, b"Too Many Requests", [(b"Retry-After", seconds)], b"429 Too Many Requests"
            )
        if isinstance(decision, Deny):
            return _answer(
                401, b"Unauthorized", [(b"WWW-Authenticate", challenge)], b"401 Unauthorized"
            )
        headers = [(n, v) for n, v in request.headers if n.lower() not in _STRIPPED]
        if decision.user:
            headers.append((b"X-Forwarded-User", decision.user.encode("utf-8")))
        return dataclasses.replace(request, headers=tuple(headers))

    def route(request: Request) -> Address:
        return upstream

    return ProxyServer(route, settings.proxy, admit=admit), gate


async def run_auth_sidecar(settings: AuthSettings, *, stop: asyncio.Event | None = None) -> None:
    """Serve on ``settings.listen`` until ``stop`` or SIGTERM/SIGINT, then drain."""
    server, _ = auth_sidecar(settings)
    await serve_until_stopped(server, settings.listen, stop=stop)
