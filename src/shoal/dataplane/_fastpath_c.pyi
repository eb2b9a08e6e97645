# The compiled build of fastpath.py (same source).
from shoal.dataplane.fastpath import forwarding_tail as forwarding_tail
from shoal.dataplane.fastpath import scan_request as scan_request
from shoal.dataplane.fastpath import scan_response as scan_response
