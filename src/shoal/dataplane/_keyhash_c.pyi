# The compiled twin of routing.segment_hash (same result).
from shoal.dataplane.routing import segment_hash as segment_hash
