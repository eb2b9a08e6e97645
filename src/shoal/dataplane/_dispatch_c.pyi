# The compiled build of dispatch.py (same source): what the runtime selects from it.
from shoal.dataplane.dispatch import ListenerDispatcher as ListenerDispatcher
from shoal.dataplane.dispatch import RequestPick as RequestPick
from shoal.dataplane.dispatch import RouteState as RouteState
