"""
``shoal sidecar tls``: HTTPS in front of a plain HTTP app in the same pod, certificates hot-reloaded.

Theory of operation
-------------------
The sidecar is the data plane's :class:`~shoal.dataplane.driver.ProxyServer` listening with TLS,
forwarding every request to one upstream (the app, usually ``127.0.0.1:8080``) with
``X-Forwarded-Proto: https`` and the client's address in ``X-Forwarded-For``.

**Reloading without a failed request.** The listening socket keeps one ``SSLContext`` for its
whole life; its ``sni_callback`` runs at every handshake (with or without SNI) and moves the new
connection onto the *current* context. A reload builds a complete new context from the files
(certificate chain, key, client CA) and, only if every step succeeded, makes it current: new
handshakes get the new pair, established connections keep theirs, and nothing is ever half
loaded. A Secret volume changes by an atomic swap of its ``..data`` symlink, but files copied by
hand may be seen mid-change (a new certificate with the old key): that pair fails to load, the
old one stays in service, and the pair is tried again when the files change again.

**When to reload** is :class:`ReloadState`'s decision, a pure core: it is given the files'
stamps (device, inode, size, modification time; ``stat`` follows the symlinks, so a swapped
``..data`` is a change) every ``reload_interval`` seconds and answers ``load`` when they differ
from both the pair in service and the last pair that failed.

**Client certificates** (``client_ca``): the handshake requires a certificate signed by that CA;
a client without one, or with another CA's, fails the handshake and never reaches the app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography import x509
from pydantic import Field

from shoal.components.sidecars._serve import parse_address, serve_until_stopped
from shoal.dataplane.driver import Address, ProxyServer, ProxySettings
from shoal.dataplane.http1 import Request
from shoal.dataplane.proxy import ForwardingSettings
from shoal.errors import PermanentError
from shoal.model._base import ShoalModel

__all__ = [
    "CertificateError",
    "CertificateStore",
    "FileStamp",
    "ReloadState",
    "TLSConfig",
    "TLSSidecarSettings",
    "file_stamp",
    "run_tls_sidecar",
    "server_context",
]

log = logging.getLogger("shoal.sidecar.tls")

MIN_VERSIONS: Final = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

FileStamp = tuple[int, int, int, int] | None
"""``(device, inode, size, mtime_ns)`` of a file (symlinks followed), or ``None`` if missing."""


class CertificateError(PermanentError):
    """The certificate, key or client CA cannot be loaded (the message names the file)."""


@dataclass(frozen=True, slots=True)
class TLSSidecarSettings:
    """Everything ``shoal sidecar tls`` can be told."""

    cert: str
    """PEM certificate chain file (leaf first); in a pod, a Secret volume's ``tls.crt``."""
    key: str
    """PEM private key file; in a pod, the Secret volume's ``tls.key``."""
    listen: str = "127.0.0.1:8443"
    """Where to accept HTTPS (``0.0.0.0:8443`` in a pod)."""
    upstream: str = "127.0.0.1:8080"
    """The plain-HTTP app."""
    client_ca: str | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed."""
    reload_interval: float = 1.0
    """Seconds between checks of the files for a new certificate or key."""
    min_version: str = "TLSv1.2"
    """Lowest TLS version accepted: ``TLSv1.2`` or ``TLSv1.3``."""
    proxy: ProxySettings = field(
        default_factory=lambda: ProxySettings(forwarding=ForwardingSettings(scheme=b"https"))
    )
    """The data plane's settings (timeouts, limits); forwarding says ``X-Forwarded-Proto: https``."""


class TLSConfig(ShoalModel):
    """``--config`` file of ``shoal sidecar tls`` (camelCase keys, as in Kubernetes)."""

    listen: str = "127.0.0.1:8443"
    upstream: str = "127.0.0.1:8080"
    cert: str
    key: str
    client_ca: str | None = None
    reload_interval_seconds: float = Field(default=1.0, gt=0)
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"

    def settings(self) -> TLSSidecarSettings:
        return TLSSidecarSettings(
            cert=self.cert,
            key=self.key,
            listen=self.listen,
            upstream=self.upstream,
            client_ca=self.client_ca,
            reload_interval=self.reload_interval_seconds,
            min_version=self.min_version,
        )


# --- the pure core ------------------------------------------------------------------------------


class ReloadState:
    """Decides when the certificate files must be loaded again; see the module docstring.

    ``observe(stamps)`` answers ``load`` or ``keep``; the driver reports the outcome of a load
    with :meth:`loaded` or :meth:`failed`. Nothing here touches a file.
    """

    __slots__ = ("failed_stamps", "in_service", "last_error")

    def __init__(self) -> None:
        self.in_service: tuple[FileStamp, ...] | None = None
        """Stamps of the pair in service (None before the first load)."""
        self.failed_stamps: tuple[FileStamp, ...] | None = None
        """Stamps of the last pair that failed, not tried again until the files change."""
        self.last_error = ""

    def observe(self, stamps: Sequence[FileStamp]) -> Literal["load", "keep"]:
        current = tuple(stamps)
        if current == self.in_service or current == self.failed_stamps:
            return "keep"
        if any(stamp is None for stamp in current):
            # A file is missing (mid-swap, or deleted): keep serving the pair we have.
            return "keep"
        return "load"

    def loaded(self, stamps: Sequence[FileStamp]) -> None:
        self.in_service = tuple(stamps)
        self.failed_stamps = None
        self.last_error = ""

    def failed(self, stamps: Sequence[FileStamp], error: str) -> None:
        self.failed_stamps = tuple(stamps)
        self.last_error = error


def file_stamp(path: str) -> FileStamp:
    """The stamp of ``path`` (symlinks followed), or ``None`` when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


# --- the I/O ------------------------------------------------------------------------------------


def server_context(
    cert: str, key: str, client_ca: str | None = None, min_version: str = "TLSv1.2"
) -> ssl.SSLContext:
    """A complete server context from the files, or :class:`CertificateError` naming the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[min_version]
    context.set_alpn_protocols(["http/1.1"])
    for path in (cert, key):
        if not os.path.exists(path):
            raise CertificateError(f"{path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise CertificateError(
            f"{cert} and {key}: not a matching PEM certificate chain and private key ({error.reason})"
        ) from None
    except OSError as error:
        raise CertificateError(f"{cert} or {key}: cannot read: {error.strerror}") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except FileNotFoundError:
            raise CertificateError(f"{client_ca}: no such file") from None
        except (ssl.SSLError, OSError) as error:
            raise CertificateError(f"{client_ca}: not a PEM CA bundle ({error})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _describe(cert: str) -> str:
    """``CN=..., expires ...`` of the leaf certificate, for the log (never the key)."""
    try:
        with open(cert, "rb") as file:
            leaf = x509.load_pem_x509_certificate(file.read())
    except (OSError, ValueError):
        return cert
    return f"{leaf.subject.rfc4514_string()}, expires {leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z"


class CertificateStore:
    """The listening context and the current one, swapped when the files change.

    Raises :class:`CertificateError` at construction when the files cannot be loaded (a sidecar
    without a certificate must not start); later failures keep the pair in service.
    """

    def __init__(self, settings: TLSSidecarSettings) -> None:
        self.settings = settings
        self.state = ReloadState()
        self.reloads = 0
        """Successful loads after the first."""
        self.failures = 0
        """Loads that failed (the previous pair stayed in service)."""
        stamps = self._stamps()
        self.current = self._build()
        self.state.loaded(stamps)
        log.info("serving certificate %s", _describe(settings.cert))
        # The listening context only dispatches: every handshake moves to the current one.
        self.listening = self._build()
        self.listening.sni_callback = self._on_hello

    def _paths(self) -> list[str]:
        settings = self.settings
        paths = [settings.cert, settings.key]
        if settings.client_ca is not None:
            paths.append(settings.client_ca)
        return paths

    def _stamps(self) -> list[FileStamp]:
        return [file_stamp(path) for path in self._paths()]

    def _build(self) -> ssl.SSLContext:
        s = self.settings
        return server_context(s.cert, s.key, s.client_ca, s.min_version)

    def _on_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        connection.context = self.current

    def check(self) -> bool:
        """Look at the files once; load them if they changed. True when a new pair went live."""
        stamps = self._stamps()
        if self.state.observe(stamps) == "keep":
            return False
        try:
            context = self._build()
        except CertificateError as error:
            self.failures += 1
            self.state.failed(stamps, str(error))
            log.warning("keeping the certificate in service: %s", error)
            return False
        self.current = context
        self.state.loaded(stamps)
        self.reloads += 1
        log.info("reloaded certificate %s", _describe(self.settings.cert))
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        """Check the files every ``reload_interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.settings.reload_interval)
            except TimeoutError:
                self.check()


def tls_sidecar(settings: TLSSidecarSettings) -> tuple[ProxyServer, CertificateStore]:
    """The proxy and certificate store of a TLS sidecar (not started)."""
    upstream: Address = parse_address(settings.upstream)
    parse_address(settings.listen)
    if settings.min_version not in MIN_VERSIONS:
        raise ValueError(f"min_version must be one of {list(MIN_VERSIONS)}")
    store = CertificateStore(settings)
    proxy_settings = settings.proxy
    if proxy_settings.forwarding.scheme != b"https":
        forwarding = dataclasses.replace(proxy_settings.forwarding, scheme=b"https")
        proxy_settings = dataclasses.replace(proxy_settings, forwarding=forwarding)

    def route(request: Request) -> Address:
        return upstream

    return ProxyServer(route, proxy_settings), store


async def run_tls_sidecar(
    settings: TLSSidecarSettings, *, stop: asyncio.Event | None = None
) -> None:
    """Serve HTTPS on ``settings.listen`` until ``stop`` or SIGTERM/SIGINT, then drain."""
    server, store = tls_sidecar(settings)
    await serve_until_stopped(
        server, settings.listen, tls=store.listening, jobs=[store.watch], stop=stop
    )
