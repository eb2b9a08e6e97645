"""
The data plane's pure cores: consistent hashing, endpoint picking, shard routing and health.

Nothing here does I/O, reads a clock or sleeps (the asyncio driver that does comes on top): every
decision is a function of the values passed in, time included, so each core is tested as a
transcript of events and decisions.

* :mod:`~shoal.dataplane.hashing`: ``maglev`` (default), ``rendezvous`` and ``ring`` hashers,
  and bounded loads for hot keys.
* :mod:`~shoal.dataplane.balancing`: smooth weighted round robin, least-request with two choices,
  random and hash-on-key pickers.
* :mod:`~shoal.dataplane.routing`: the shard router (``shardRegexp`` key, hashed shard, balanced
  replica) over an immutable, atomically swapped routing table.
* :mod:`~shoal.dataplane.health`: active checks, passive outlier ejection, the retry budget and
  per-endpoint pending limits.

The I/O around them: :mod:`~shoal.dataplane.driver` (the HTTP/1.1 proxy engine),
:mod:`~shoal.dataplane.dispatch` (the cores wired to it), and :mod:`~shoal.dataplane.runtime`,
whose ``Proxy`` (``start``/``apply``/``shutdown``) is what other layers embed. They are imported
from their modules, not from here, so that importing the cores stays free of asyncio.
"""

from shoal.dataplane.balancing import (
    POLICIES,
    BalancingSettings,
    Endpoint,
    HashPicker,
    LeastRequest,
    Picker,
    RandomPicker,
    SmoothWeightedRoundRobin,
    make_picker,
)
from shoal.dataplane.hashing import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    MAGLEV_TABLE_SIZE,
    BoundedLoads,
    Hasher,
    HashingSettings,
    MaglevHasher,
    RendezvousHasher,
    RingHasher,
    key_hash,
    make_hasher,
)
from shoal.dataplane.health import (
    IDEMPOTENT_METHODS,
    ActiveCheckSettings,
    ActiveHealth,
    Admission,
    CheckResult,
    Ejected,
    EjectionRefused,
    Failure,
    HealthState,
    Outcome,
    OutlierDetector,
    OutlierEvent,
    OutlierSettings,
    PendingLimiter,
    PendingSettings,
    Readmitted,
    RetryBudget,
    RetryDecision,
    RetrySettings,
    Transition,
)
from shoal.dataplane.routing import (
    Route,
    Router,
    RoutingSettings,
    RoutingTable,
    Shard,
    ShardCounters,
    shard_key,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "IDEMPOTENT_METHODS",
    "MAGLEV_TABLE_SIZE",
    "POLICIES",
    "ActiveCheckSettings",
    "ActiveHealth",
    "Admission",
    "BalancingSettings",
    "BoundedLoads",
    "CheckResult",
    "Ejected",
    "EjectionRefused",
    "Endpoint",
    "Failure",
    "HashPicker",
    "Hasher",
    "HashingSettings",
    "HealthState",
    "LeastRequest",
    "MaglevHasher",
    "Outcome",
    "OutlierDetector",
    "OutlierEvent",
    "OutlierSettings",
    "PendingLimiter",
    "PendingSettings",
    "Picker",
    "RandomPicker",
    "Readmitted",
    "RendezvousHasher",
    "RetryBudget",
    "RetryDecision",
    "RetrySettings",
    "RingHasher",
    "Route",
    "Router",
    "RoutingSettings",
    "RoutingTable",
    "Shard",
    "ShardCounters",
    "SmoothWeightedRoundRobin",
    "Transition",
    "key_hash",
    "make_hasher",
    "make_picker",
    "shard_key",
]
