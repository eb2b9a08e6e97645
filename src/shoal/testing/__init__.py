"""Helpers for testing code built on shoal: a fake clock and an in-memory API.

* :class:`FakeClock`: time that moves only when a test advances it.
* :class:`InMemoryAPI`: the :class:`~shoal.client.ObjectAPI` calls over a dict, with
  resourceVersions, conflicts, generations, watches that replay from a revision, and compaction
  (watches from before it fail with :class:`~shoal.client.WatchExpired`) — enough to test
  controllers and informers without a server. Tests that need the real API server start one with
  the helpers the API server adds here.
"""

from shoal.client.clock import FakeClock
from shoal.testing._memory import InMemoryAPI
from shoal.testing.apiserver import (
    LocalAPIServer,
    ServerProcess,
    api_server,
    api_server_process,
)

__all__ = [
    "FakeClock",
    "InMemoryAPI",
    "LocalAPIServer",
    "ServerProcess",
    "api_server",
    "api_server_process",
]
