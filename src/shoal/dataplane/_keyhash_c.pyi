# The compiled twin of routing.plain_hash (same result).
from shoal.dataplane.routing import plain_hash as plain_hash
