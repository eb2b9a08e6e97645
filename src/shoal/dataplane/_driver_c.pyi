# The compiled build of driver.py (same source): what the pure module selects from it.
from shoal.dataplane.driver import UpstreamPool as UpstreamPool
from shoal.dataplane.driver import _ClientProtocol as _ClientProtocol
from shoal.dataplane.driver import _UpstreamProtocol as _UpstreamProtocol
