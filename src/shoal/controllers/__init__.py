"""The controllers of the one-machine cluster: workloads, endpoints and the patterns.

Each controller is a pure core (state in, decisions out; see each module) and a thin driver
that reads shared informer caches and writes through any :class:`~shoal.client.ObjectAPI`:

* :mod:`~shoal.controllers.replicaset`: a ReplicaSet keeps ``replicas`` pods of its template;
* :mod:`~shoal.controllers.rollout` and :mod:`~shoal.controllers.deployment`: a Deployment's
  revisions as ReplicaSets, rolled out (RollingUpdate with maxSurge/maxUnavailable and
  minReadySeconds, or Recreate), scaled, rolled back, reported as Kubernetes reports them;
* :mod:`~shoal.controllers.endpointslice`: every Service with a selector gets EndpointSlices of
  its pods' addresses, with ready/serving/terminating conditions;
* :mod:`~shoal.controllers.patterns`: ReplicatedService and ShardedService become their
  compiled children (Deployments, Services, the router's ConfigMap), and report.

Start them all with :func:`all_controllers`::

    manager = all_controllers(client, ControllerSettings())
    async with asyncio.TaskGroup() as group:
        for runnable in manager:
            group.create_task(runnable.run())
        ...
        manager.stop()
"""

from shoal.controllers._runtime import ControllerSettings
from shoal.controllers.manager import ControllerManager, Runnable, all_controllers

__all__ = ["ControllerManager", "ControllerSettings", "Runnable", "all_controllers"]
