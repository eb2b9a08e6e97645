"""The client layer: what controllers need from an API, and the runtime that drives them.

* :mod:`~shoal.client.protocol`: the calls (list, watch, get, create, update, delete) and errors;
* :mod:`~shoal.client.informers`: list-then-watch caches that report changed keys;
* :mod:`~shoal.client.queueing`: the de-duplicating work queue with back-off;
* :mod:`~shoal.client.runtime`: controllers as idempotent ``reconcile(key)``;
* :mod:`~shoal.client.events`: Events about objects, counted up when repeated;
* :mod:`~shoal.client.clock`: real and fake time.

* :mod:`~shoal.client.http`: the protocol over HTTP, for shoal's API server and Kubernetes alike;
* :mod:`~shoal.client.kubeconfig`: which server, CA, credentials and namespace a kubeconfig names.
"""

from shoal.client.clock import Clock, FakeClock, LoopClock
from shoal.client.events import EventRecorder, EventSettings
from shoal.client.http import (
    APIError,
    APIResource,
    APIRetryableError,
    ApplyResult,
    ConflictError,
    HTTPClient,
    NotFoundError,
    Status,
    UnknownResource,
)
from shoal.client.informers import Informer, InformerSettings
from shoal.client.kubeconfig import KubeConfig, KubeConfigError, load_kubeconfig
from shoal.client.protocol import (
    APIConflict,
    APINotFound,
    ListResult,
    ObjectAPI,
    ResourceRef,
    WatchEvent,
    WatchExpired,
    object_key,
)
from shoal.client.queueing import QueueSettings, QueueShutDown, WorkQueue, backoff_delay
from shoal.client.runtime import Controller, ControllerSettings, Result

__all__ = [
    "APIConflict",
    "APIError",
    "APINotFound",
    "APIResource",
    "APIRetryableError",
    "ApplyResult",
    "Clock",
    "ConflictError",
    "Controller",
    "ControllerSettings",
    "EventRecorder",
    "EventSettings",
    "FakeClock",
    "HTTPClient",
    "Informer",
    "InformerSettings",
    "KubeConfig",
    "KubeConfigError",
    "ListResult",
    "LoopClock",
    "NotFoundError",
    "ObjectAPI",
    "QueueSettings",
    "QueueShutDown",
    "ResourceRef",
    "Result",
    "Status",
    "UnknownResource",
    "WatchEvent",
    "WatchExpired",
    "WorkQueue",
    "backoff_delay",
    "load_kubeconfig",
    "object_key",
]
