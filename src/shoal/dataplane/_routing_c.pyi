# The compiled build of routing.py (same source): the shard router.
from shoal.dataplane.routing import Router as Router
from shoal.dataplane.routing import RoutingTable as RoutingTable
from shoal.dataplane.routing import plain_form as plain_form
from shoal.dataplane.routing import plain_hash as plain_hash
from shoal.dataplane.routing import plain_key as plain_key
from shoal.dataplane.routing import request_path as request_path
from shoal.dataplane.routing import shard_key as shard_key
