# The compiled build of hashing.py (same source): its hashers.
from shoal.dataplane.hashing import BoundedLoads as BoundedLoads
from shoal.dataplane.hashing import MaglevHasher as MaglevHasher
from shoal.dataplane.hashing import RendezvousHasher as RendezvousHasher
from shoal.dataplane.hashing import RingHasher as RingHasher
from shoal.dataplane.hashing import key_hash as key_hash
from shoal.dataplane.hashing import make_hasher as make_hasher
