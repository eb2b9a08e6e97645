"""The talk's Python calls, as written, rendered to Kubernetes manifests.

Run: python examples/08-python-api/talk.py
"""

import shoal
from shoal import ReplicatedService, ShardedService

replicated = ReplicatedService(image="acr.io/brendan/my-server:v1", ports=[8080], replicas=4)
sharded = ShardedService(
    image="acr.io/brendan/my-server:v1",
    shard_regexp="/users/(.*)/.*",
    ports=[8080],
    shards=4,
    name="users",
    sidecars=[shoal.Container(name="log-shipper", image="fluent/fluent-bit:3.1")],
)

print(replicated.to_yaml())
print("---")
print(shoal.render([replicated, sharded], target="kubernetes"), end="")
