"""
Ambassadors: the app talks to one local address; the ambassador represents it to many servers.

``shoal ambassador redis`` and ``shoal ambassador memcached`` shard keys over several servers with
the data plane's consistent hashing (:mod:`shoal.dataplane.hashing`), like twemproxy: RESP2 and the
memcached text protocol, pipelining kept, multi-key commands split and merged where the protocol
allows, everything else refused with the protocol's own error. See docs/components/ambassador-redis.md.

* :mod:`.resp`, :mod:`.memcache`: the protocols as sans-IO parsers (pure);
* :mod:`.servers`: server specs, hash tags, the key router and the health state machine (pure);
* :mod:`.planning`: request to plan (forward, split and merge, answer) (pure);
* :mod:`.driver`: the asyncio driver; :mod:`.serve`: the process around it;
* :mod:`.config`: settings and the YAML form.
"""

from shoal.components.ambassadors.config import (
    PROTOCOLS,
    AmbassadorConfig,
    AmbassadorSettings,
    load_config,
)
from shoal.components.ambassadors.driver import Ambassador
from shoal.components.ambassadors.serve import run_ambassador, serve_ambassador
from shoal.components.ambassadors.servers import (
    HealthSettings,
    KeyRouter,
    ServerHealth,
    ServerSpec,
    hashed_part,
    parse_server,
)

__all__ = [
    "PROTOCOLS",
    "Ambassador",
    "AmbassadorConfig",
    "AmbassadorSettings",
    "HealthSettings",
    "KeyRouter",
    "ServerHealth",
    "ServerSpec",
    "hashed_part",
    "load_config",
    "parse_server",
    "run_ambassador",
    "serve_ambassador",
]
