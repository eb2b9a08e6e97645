"""A container's environment and command line, computed the way the kubelet computes them.

Pure: the caller passes the pod, the container, the Services of the namespace and lookups for
ConfigMaps and Secrets (the node's informer caches).

Precedence, lowest first (each later source overrides an earlier one):

1. variables inherited from the node (``PATH``, ``HOME``...: ``NodeSettings.inherit_env``);
2. the node's own: ``POD_IP``, ``POD_NAME``, ``POD_NAMESPACE``, ``HOSTNAME`` (the pod's name)
   and ``SHOAL_MOUNT_<VOLUME>`` for each volume mount;
3. Kubernetes service variables for the Services of the pod's namespace (``WEB_SERVICE_HOST``,
   ``WEB_SERVICE_PORT``, ``WEB_SERVICE_PORT_HTTP``, ``WEB_PORT=tcp://...``...), skipping
   Services without a cluster IP;
4. ``envFrom`` (ConfigMaps and Secrets, with ``prefix``), in order;
5. ``env``, in order; a ``value`` may refer to earlier variables as ``$(NAME)``.

``$(NAME)`` in ``env`` values, ``command`` and ``args`` is replaced by the variable's value; a
reference to an undefined variable is left as written, and ``$$`` stands for a literal ``$``
(Kubernetes' ``third_party/forked/golang/expansion``).

Paths: processes here see the node's file system, not a container's, so a path under a volume's
``mountPath`` is rewritten to the directory the node materialized for that volume. A value is
rewritten when it starts with a mount path (``/etc/app/config.yaml``) or is an option whose
value does (``--config=/etc/app/config.yaml``); the longest matching mount path wins.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from shoal.errors import RetryableError
from shoal.model.core import Container, EnvVarSource

__all__ = [
    "ContainerConfigError",
    "container_command",
    "container_env",
    "expand",
    "mount_variable",
    "rewrite_path",
    "service_env",
]

Lookup = Callable[[str, str], Mapping[str, Any] | None]
"""``(namespace, name) -> object`` (a ConfigMap or Secret from the cache), None if absent."""

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_LABEL_REF = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


class ContainerConfigError(RetryableError):
    """The container's configuration refers to something missing (``CreateContainerConfigError``);
    it is retried, as the referenced object may appear."""


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """``$(NAME)`` references in ``text`` replaced by ``lookup(NAME)`` when defined."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 >= n:
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            value = lookup(name) if name else None
            out.append(value if value is not None else text[i : end + 1])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def service_env(services: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Kubernetes' service environment variables (``{SVC}_SERVICE_HOST`` and the Docker-link
    style ``{SVC}_PORT...``) for Services that have a cluster IP."""
    env: dict[str, str] = {}
    for service in sorted(services, key=lambda s: str(s.get("metadata", {}).get("name"))):
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = str(service.get("metadata", {}).get("name", "")).upper().replace("-", "_")
        ports = [p for p in spec.get("ports") or [] if isinstance(p, Mapping)]
        env[f"{name}_SERVICE_HOST"] = str(ip)
        if not ports:
            continue
        env[f"{name}_SERVICE_PORT"] = str(ports[0].get("port"))
        for port in ports:
            if port.get("name"):
                port_name = str(port["name"]).upper().replace("-", "_")
                env[f"{name}_SERVICE_PORT_{port_name}"] = str(port.get("port"))
        first = ports[0]
        env[f"{name}_PORT"] = (
            f"{str(first.get('protocol') or 'TCP').lower()}://{ip}:{first.get('port')}"
        )
        for port in ports:
            protocol = str(port.get("protocol") or "TCP")
            prefix = f"{name}_PORT_{port.get('port')}_{protocol.upper()}"
            env[prefix] = f"{protocol.lower()}://{ip}:{port.get('port')}"
            env[f"{prefix}_PROTO"] = protocol.lower()
            env[f"{prefix}_PORT"] = str(port.get("port"))
            env[f"{prefix}_ADDR"] = str(ip)
    return env


def mount_variable(volume_name: str) -> str:
    """``SHOAL_MOUNT_<NAME>``: the variable holding where a mounted volume is."""
    return "SHOAL_MOUNT_" + re.sub(r"[^A-Za-z0-9]", "_", volume_name).upper()


def rewrite_path(value: str, mounts: Mapping[str, str]) -> str:
    """``value`` with a leading mount path (or ``--opt=`` followed by one) replaced by the
    materialized directory; ``mounts`` maps mount paths to directories."""
    prefix = ""
    rest = value
    if value.startswith("-") and "=" in value:
        prefix, rest = value.split("=", 1)
        prefix += "="
    for mount_path in sorted(mounts, key=len, reverse=True):
        base = mount_path.rstrip("/") or "/"
        if rest == base or rest.startswith(base + "/") or (base == "/" and rest.startswith("/")):
            tail = rest[len(base) :] if base != "/" else rest
            return prefix + mounts[mount_path] + tail
    return value


def _decode(data: Mapping[str, Any] | None, key: str) -> str | None:
    if not data or key not in data:
        return None
    try:
        return base64.b64decode(str(data[key]), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def config_map_value(config_map: Mapping[str, Any], key: str) -> str | None:
    value = (config_map.get("data") or {}).get(key)
    if value is not None:
        return str(value)
    return _decode(config_map.get("binaryData"), key)


def secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key])
    return _decode(secret.get("data"), key)


def config_map_items(config_map: Mapping[str, Any]) -> dict[str, str]:
    items = {
        str(k): v
        for k in (config_map.get("binaryData") or {})
        if (v := config_map_value(config_map, str(k))) is not None
    }
    items.update({str(k): str(v) for k, v in (config_map.get("data") or {}).items()})
    return items


def secret_items(secret: Mapping[str, Any]) -> dict[str, str]:
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return {str(k): v for k in keys if (v := secret_value(secret, str(k))) is not None}


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The value of a ``fieldRef`` (the supported paths are the model's)."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    match = _LABEL_REF.fullmatch(path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    values = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(
            str(i.get("ip")) for i in status.get("podIPs") or [] if isinstance(i, Mapping)
        ),
    }
    return str(values.get(path) or "")


def _source_value(
    source: EnvVarSource,
    pod: Mapping[str, Any],
    namespace: str,
    config_maps: Lookup,
    secrets: Lookup,
) -> str | None:
    if source.field_ref is not None:
        return field_value(pod, source.field_ref.field_path)
    ref = source.config_map_key_ref or source.secret_key_ref
    if ref is None:
        return None
    is_secret = source.secret_key_ref is not None
    kind = "secret" if is_secret else "configmap"
    obj = (secrets if is_secret else config_maps)(namespace, ref.name)
    if obj is None:
        if ref.optional:
            return None
        raise ContainerConfigError(f'{kind} "{ref.name}" not found')
    value = secret_value(obj, ref.key) if is_secret else config_map_value(obj, ref.key)
    if value is None and not ref.optional:
        raise ContainerConfigError(f'couldn\'t find key {ref.key} in {kind} "{ref.name}"')
    return value


def container_env(
    pod: Mapping[str, Any],
    container: Container,
    *,
    base: Mapping[str, str],
    node_vars: Mapping[str, str],
    services: Iterable[Mapping[str, Any]],
    config_maps: Lookup,
    secrets: Lookup,
    mounts: Mapping[str, str],
) -> dict[str, str]:
    """The environment of ``container`` (see the module docstring for precedence)."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    lower: dict[str, str] = {**base, **node_vars, **service_env(services)}
    own: dict[str, str] = {}
    for source in container.env_from or ():
        ref = source.config_map_ref or source.secret_ref
        if ref is None:
            continue
        is_secret = source.secret_ref is not None
        obj = (secrets if is_secret else config_maps)(namespace, ref.name)
        if obj is None:
            if ref.optional:
                continue
            raise ContainerConfigError(
                f'{"secret" if is_secret else "configmap"} "{ref.name}" not found'
            )
        items = secret_items(obj) if is_secret else config_map_items(obj)
        for key, value in sorted(items.items()):
            name = (source.prefix or "") + key
            if _ENV_NAME.fullmatch(name):
                own[name] = value

    def lookup(name: str) -> str | None:
        return own.get(name, lower.get(name))

    for var in container.env or ():
        if var.value_from is not None:
            sourced = _source_value(var.value_from, pod, namespace, config_maps, secrets)
            if sourced is None:
                continue
            own[var.name] = rewrite_path(sourced, mounts)
        else:
            own[var.name] = rewrite_path(expand(var.value or "", lookup), mounts)
    return {**lower, **own}


def container_command(
    container: Container,
    env: Mapping[str, str],
    mounts: Mapping[str, str],
    *,
    python: Sequence[str],
) -> list[str]:
    """The argv to run: ``command`` + ``args`` expanded, paths rewritten; a command whose first
    word is ``shoal`` runs as ``python -m shoal`` (``python`` is the node's own interpreter)."""
    words = [*(container.command or []), *(container.args or [])]
    argv = [rewrite_path(expand(word, env.get), mounts) for word in words]
    if argv and argv[0] == "shoal":
        argv = [*python, "-m", "shoal", *argv[1:]]
    return argv
