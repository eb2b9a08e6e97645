"""The node: the one-machine kubelet that runs Pods as supervised process groups.

* :class:`Node` watches Pods through the API and runs its own (see :mod:`shoal.node.node`);
* :class:`NodeSettings`: data dir, pod address range, back-off, probe scaling, log rotation;
* the pure cores: :mod:`~shoal.node.addresses`, :mod:`~shoal.node.backoff`,
  :mod:`~shoal.node.probes`, :mod:`~shoal.node.podstatus`, :mod:`~shoal.node.environment`.

See ``docs/node.md``.
"""

from shoal.node.node import Node, NodeAlreadyRunning
from shoal.node.settings import NodeSettings

__all__ = ["Node", "NodeAlreadyRunning", "NodeSettings"]
