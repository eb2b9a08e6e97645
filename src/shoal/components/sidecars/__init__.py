"""Sidecars: processes beside an app in its pod that add what it lacks.

* :mod:`~shoal.components.sidecars.tls`: HTTPS (and client certificates) in front of plain HTTP,
  certificates reloaded from files without a failed request;
* :mod:`~shoal.components.sidecars.configsync`: a ConfigMap kept as files in a shared directory
  (the kubelet's atomic ``..data`` swap), the app told by signal or HTTP when it changed;
* :mod:`~shoal.components.sidecars.auth`: bearer-token or basic authentication and a per-client
  or global rate limit.
"""
