"""The one-machine cluster: the API server, the controllers, the node and the service proxy in one
supervised process, and the lifecycle ``shoal up`` / ``shoal down`` / ``shoal status`` drive.

* :mod:`~shoal.cluster.services`: Services + EndpointSlices -> the listeners to serve (pure).
* :mod:`~shoal.cluster.readiness`: is an applied object done yet (pure).
"""
