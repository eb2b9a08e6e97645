# The compiled build of routing.py (same source): the shard router.
from shoal.dataplane.routing import Router as Router
from shoal.dataplane.routing import RoutingTable as RoutingTable
from shoal.dataplane.routing import segment_key as segment_key
from shoal.dataplane.routing import segment_prefix as segment_prefix
from shoal.dataplane.routing import shard_key as shard_key
