"""Read a kubeconfig: which server, how to trust it, how to authenticate, which namespace.

Where the file is found, first match wins:

1. the path given (``--kubeconfig``);
2. ``$KUBECONFIG`` (the first existing file of a ``:``-separated list);
3. ``$SHOAL_HOME/kubeconfig``, else ``~/.shoal/kubeconfig`` (what ``shoal server`` writes);
4. ``~/.kube/config``.

Only what a client needs is read from the current context (or the one named): the server URL, the
CA (``certificate-authority-data`` or ``certificate-authority``), a bearer token (``token`` or
``tokenFile``), a client certificate and key (data or files), ``insecure-skip-tls-verify``, and the
namespace (``default`` when the context names none). Every error names the file and what is missing.
Relative file paths in the kubeconfig are relative to the kubeconfig's directory, as kubectl reads
them.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shoal.errors import PermanentError

__all__ = ["KubeConfig", "KubeConfigError", "find_kubeconfig", "load_kubeconfig"]


class KubeConfigError(PermanentError):
    """The kubeconfig is missing, unreadable, or lacks what a client needs (the message says)."""


@dataclass(frozen=True, slots=True)
class KubeConfig:
    """What a client needs from one context of a kubeconfig."""

    path: Path
    context: str
    server: str
    namespace: str = "default"
    ca_data: bytes | None = field(default=None, repr=False)
    """The CA certificates (PEM) to verify the server against; None trusts the system's."""
    token: str | None = field(default=None, repr=False)
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header, when the user authenticates with a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context trusting the kubeconfig's CA (or the system's), with the client
        certificate loaded when there is one; None for a plain ``http://`` server."""
        if not self.server.startswith("https://"):
            return None
        if self.ca_data is not None:
            context = ssl.create_default_context(cadata=self.ca_data.decode("ascii"))
        else:
            context = ssl.create_default_context()
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_data is not None and self.client_key_data is not None:
            _load_cert_chain(context, self.client_cert_data, self.client_key_data)
        return context


def find_kubeconfig(path: str | os.PathLike[str] | None = None) -> Path:
    """The kubeconfig a client should use (see the module's docstring for the order)."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("KUBECONFIG")
    if env:
        candidates = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        if candidates:
            return candidates[0]
    home = os.environ.get("SHOAL_HOME")
    shoal = Path(home) / "kubeconfig" if home else Path.home() / ".shoal" / "kubeconfig"
    if shoal.is_file():
        return shoal
    return Path.home() / ".kube" / "config"


def load_kubeconfig(
    path: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    namespace: str | None = None,
) -> KubeConfig:
    """Read the kubeconfig found by :func:`find_kubeconfig`; ``context`` overrides the current
    one and ``namespace`` the context's. Raises :class:`KubeConfigError`."""
    file = find_kubeconfig(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KubeConfigError(
            f"{file}: no such kubeconfig (start `shoal server`, or pass --kubeconfig or set "
            "KUBECONFIG)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise KubeConfigError(f"{file}: cannot read the kubeconfig: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise KubeConfigError(f"{file}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise KubeConfigError(f"{file}: a kubeconfig must be a mapping (kind: Config)")
    name = context or data.get("current-context")
    if not name:
        raise KubeConfigError(f"{file}: no current-context is set and no context was given")
    ctx = _named(file, data, "contexts", "context", str(name))
    cluster_name = ctx.get("cluster")
    if not cluster_name:
        raise KubeConfigError(f"{file}: context {name!r} names no cluster")
    cluster = _named(file, data, "clusters", "cluster", str(cluster_name))
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeConfigError(f"{file}: cluster {cluster_name!r} has no server URL")
    user: Mapping[str, Any] = {}
    if ctx.get("user"):
        user = _named(file, data, "users", "user", str(ctx["user"]))
    where = f"cluster {cluster_name!r}"
    ca = _data_or_file(
        file, cluster, "certificate-authority-data", "certificate-authority", where=where
    )
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _read(
            file, _relative(file, str(user["tokenFile"])), f"user {ctx['user']!r} tokenFile"
        )
        token = token.decode().strip()
    who = f"user {ctx.get('user')!r}"
    cert = _data_or_file(file, user, "client-certificate-data", "client-certificate", where=who)
    key = _data_or_file(file, user, "client-key-data", "client-key", where=who)
    if (cert is None) != (key is None):
        missing = "client-key(-data)" if key is None else "client-certificate(-data)"
        raise KubeConfigError(f"{file}: {who} has a client certificate or key but no {missing}")
    return KubeConfig(
        path=file,
        context=str(name),
        server=server.rstrip("/"),
        namespace=namespace or str(ctx.get("namespace") or "default"),
        ca_data=ca,
        token=str(token) if token else None,
        client_cert_data=cert,
        client_key_data=key,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


def _named(
    file: Path, data: Mapping[str, Any], section: str, key: str, name: str
) -> Mapping[str, Any]:
    entries = data.get(section) or []
    if not isinstance(entries, list):
        raise KubeConfigError(f"{file}: {section} must be a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(key) or {}
            if not isinstance(body, dict):
                raise KubeConfigError(f"{file}: {key} {name!r} must be a mapping")
            return body
    names = ", ".join(repr(e.get("name")) for e in entries if isinstance(e, dict)) or "none"
    raise KubeConfigError(f"{file}: no {key} named {name!r} in {section} (found: {names})")


def _data_or_file(
    file: Path, section: Mapping[str, Any], data_key: str, file_key: str, *, where: str
) -> bytes | None:
    encoded = section.get(data_key)
    if encoded:
        try:
            return base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            raise KubeConfigError(f"{file}: {where} {data_key} is not valid base64") from None
    path = section.get(file_key)
    if path:
        return _read(file, _relative(file, str(path)), f"{where} {file_key}")
    return None


def _relative(file: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else file.parent / candidate


def _read(file: Path, path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise KubeConfigError(f"{file}: {what} {path}: {error.strerror}") from None


def _load_cert_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl loads certificates only from files: write them to a private temporary directory.
    with tempfile.TemporaryDirectory(prefix="shoal-kubeconfig-") as directory:
        cert_path, key_path = Path(directory) / "client.crt", Path(directory) / "client.key"
        for path, content in ((cert_path, cert), (key_path, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as output:
                output.write(content)
        context.load_cert_chain(str(cert_path), str(key_path))
