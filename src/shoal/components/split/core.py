"""
The split ambassador's decisions, pure: which side gets a request, and whether it is mirrored.

Theory of operation
-------------------
:class:`Splitter` sends ``weight`` percent of requests to the canary and the rest to the primary.

* **Without stickiness** each request draws once from its ``random.Random`` (seeded in tests):
  the canary's share is a binomial sample around ``weight``, as with nginx's ``split_clients``
  or Envoy's weighted clusters.
* **Sticky** (``sticky_header`` or ``sticky_cookie``): the header's or cookie's value is the key
  of the data plane's consistent hashing (:func:`shoal.dataplane.hashing.make_hasher`, Maglev)
  over the two sides weighted ``100 - weight : weight`` (in hundredths of a percent). A key always
  lands on the same side; raising the weight moves keys from primary to canary and (Maglev's
  near-minimal disruption) hardly any the other way. A request without the key draws at random.

:class:`MirrorPolicy` decides which requests are copied to a shadow: ``percent`` of them, drawn
at random, and only requests without a body (the copy is made from the head alone: the body
streams to the chosen side and is not kept). The shadow's answer is dropped by the driver.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from shoal.dataplane.hashing import Hasher, HashingSettings, make_hasher
from shoal.dataplane.http1 import Request

__all__ = [
    "CANARY",
    "PRIMARY",
    "MirrorPolicy",
    "Side",
    "Splitter",
    "cookie_value",
    "header_value",
    "sticky_key",
]

Side = Literal["primary", "canary"]
PRIMARY: Final = "primary"
CANARY: Final = "canary"
_SCALE: Final = 100  # weights are kept in hundredths of a percent
_TABLE: Final = 65537  # Maglev table: ample for 2 entries weighted to 1/10000


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of field ``name`` (case-insensitive), or ``None``."""
    wanted = name.lower()
    for field_name, value in headers:
        if field_name.lower() == wanted:
            return value
    return None


def cookie_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of cookie ``name`` in any ``Cookie`` field (RFC 6265 pairs), or ``None``."""
    for field_name, value in headers:
        if field_name.lower() != b"cookie":
            continue
        for pair in value.split(b";"):
            key, sep, cookie = pair.strip().partition(b"=")
            if sep and key == name:
                return cookie.strip().strip(b'"')
    return None


def sticky_key(request: Request, header: bytes | None, cookie: bytes | None) -> bytes | None:
    """The request's stickiness key: the header's value, else the cookie's, else ``None``."""
    if header is not None:
        found = header_value(request.headers, header)
        if found:
            return found
    if cookie is not None:
        found = cookie_value(request.headers, cookie)
        if found:
            return found
    return None


class Splitter:
    """Primary or canary for each request; see the module docstring."""

    __slots__ = ("_hasher", "_rng", "_threshold", "weight")

    def __init__(self, weight: float, rng: random.Random | None = None) -> None:
        if not 0 <= weight <= 100:
            raise ValueError(f"weight must be between 0 and 100 (a percentage), not {weight}")
        self.weight = weight
        self._rng = rng or random.Random()  # noqa: S311 -- traffic splitting, not cryptography
        self._threshold = weight / 100
        canary = round(weight * _SCALE)
        self._hasher: Hasher | None = None
        if 0 < canary < 100 * _SCALE:
            self._hasher = make_hasher(
                "maglev",
                [PRIMARY, CANARY],
                [100 * _SCALE - canary, canary],
                settings=HashingSettings(maglev_table_size=_TABLE),
            )

    def choose(self, key: bytes | None = None) -> Side:
        """The side for a request with stickiness ``key`` (``None``: a random draw)."""
        if self.weight <= 0:
            return PRIMARY
        if self.weight >= 100:
            return CANARY
        if key is None or self._hasher is None:
            return CANARY if self._rng.random() < self._threshold else PRIMARY
        return CANARY if self._hasher.lookup(key) == CANARY else PRIMARY


@dataclass(slots=True)
class MirrorPolicy:
    """Whether a request is copied to the shadow: ``percent`` of bodiless requests."""

    percent: float
    rng: random.Random

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"mirror percent must be between 0 and 100, not {self.percent}")

    def wants(self, request: Request) -> bool:
        if request.framing != "none" or request.upgrade is not None:
            return False
        if self.percent >= 100:
            return True
        return self.percent > 0 and self.rng.random() * 100 < self.percent
