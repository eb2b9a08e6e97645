"""``shoal ambassador``: processes that represent the app to the outside world.

The group lives here; each subcommand lives in its own ``shoal.cli.ambassador_*`` module and is
added below, so several people can work on ambassadors without editing one file:

* ``redis`` and ``memcached`` (``shoal.cli.ambassador_sharding``): shard keys over servers, like
  twemproxy (docs/components/ambassador-redis.md).

To add a subcommand (``split``, say): write ``src/shoal/cli/ambassador_split.py`` defining a click
command named ``split``, then add one import and one ``ambassador_group.add_command(...)`` line
below. Keep the shared flag shapes: ``--listen ADDR`` where it serves, ``--upstream ADDR`` the app
it fronts, ``--server ADDR`` (repeated) the servers it spreads over, ``--config FILE`` for YAML.
"""

from __future__ import annotations

import click

from shoal.cli.ambassador_sharding import memcached_command, redis_command
from shoal.cli.ambassador_split import split_command

__all__ = ["ambassador_group"]


@click.group("ambassador")
def ambassador_group() -> None:
    """Ambassadors: the app talks to one local address; the ambassador represents it.

    `redis` and `memcached` shard keys over several servers with consistent hashing; `split`
    sends a weighted share of requests to a canary and can mirror a share to a shadow.
    """


ambassador_group.add_command(redis_command)
ambassador_group.add_command(memcached_command)
ambassador_group.add_command(split_command)
