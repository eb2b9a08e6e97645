# cython: annotation_typing=False, wraparound=True, boundscheck=True
# driver.py compiled a second time, from the same source (see native.py).
include "driver.py"

# The compiled RESP scanners in place of the pure ones (same contracts; see resp.py).
from shoal.components.ambassadors._resp import scan_commands, split_replies
# The memcached parser compiled too (memcache.py a second time; same behaviour).
from shoal.components.ambassadors import _memcache as memcache
