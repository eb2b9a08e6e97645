"""Secure by default: a generated CA and serving certificate, a bearer token, a 0600 kubeconfig.

On first start the API server makes, in its data directory (``$SHOAL_HOME`` or ``~/.shoal``):

=====================  ===============================================================  =====
file                   what                                                             mode
=====================  ===============================================================  =====
``pki/ca.crt``         a self-signed CA (EC P-256, 10 years) that signs the server's     0644
``pki/ca.key``         its key                                                          0600
``pki/server.crt``     the serving certificate (1 year) for the listen address,        0644
                       ``127.0.0.1``, ``::1`` and ``localhost``
``pki/server.key``     its key                                                          0600
``token``              the admin bearer token (256 random bits)                         0600
``kubeconfig``         server URL, the CA, the token: for ``kubectl --kubeconfig``      0600
=====================  ===============================================================  =====

Later starts reuse them; the serving certificate is made again when it no longer covers the
address or is about to expire. Files are written atomically (temporary file, fsync, rename), so
a crash never leaves half a key. Secrets are never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "Credentials",
    "default_data_dir",
    "ensure_credentials",
    "tokens_equal",
    "write_kubeconfig",
]

CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE_DAYS = 30
DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")


def default_data_dir() -> Path:
    """``$SHOAL_HOME`` when set, else ``~/.shoal``."""
    home = os.environ.get("SHOAL_HOME")
    return Path(home) if home else Path.home() / ".shoal"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the server's TLS material and token are, and the token itself."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    token: str

    def __repr__(self) -> str:  # the token must never reach a log
        return f"Credentials(ca_cert={self.ca_cert!s}, server_cert={self.server_cert!s}, token=<redacted>)"


def ensure_credentials(data_dir: Path, hosts: Iterable[str] = ()) -> Credentials:
    """Create (or reuse) the CA, the serving certificate for ``hosts``, and the token."""
    pki = data_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    all_hosts = tuple(dict.fromkeys([*hosts, *DEFAULT_HOSTS]))
    ca_cert_path, ca_key_path = pki / "ca.crt", pki / "ca.key"
    if ca_cert_path.exists() and ca_key_path.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(
                f"{ca_key_path} is not an EC key; move the pki directory away to regenerate"
            )
    else:
        ca_key, ca_cert = _make_ca()
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    server_cert_path, server_key_path = pki / "server.crt", pki / "server.key"
    if not _serving_cert_ok(server_cert_path, server_key_path, ca_cert, all_hosts):
        key, cert = _make_serving(ca_key, ca_cert, all_hosts)
        _write(server_key_path, _key_pem(key), 0o600)
        _write(server_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    token_path = data_dir / "token"
    if token_path.exists():
        token = token_path.read_text().strip()
    else:
        token = secrets.token_urlsafe(32)
        _write(token_path, token.encode() + b"\n", 0o600)
    return Credentials(ca_cert_path, server_cert_path, server_key_path, token)


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, token: str, name: str = "shoal"
) -> None:
    """A kubeconfig with one cluster, user and context named ``name``; mode 0600."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_cert.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"},
            }
        ],
        "current-context": name,
        "preferences": {},
    }
    _write(path, yaml.safe_dump(config, sort_keys=False).encode(), 0o600)


def tokens_equal(given: str, expected: str) -> bool:
    """Compare tokens in constant time (no timing side channel)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_serving(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: tuple[str, ...]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVING_DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _serving_cert_ok(
    cert_path: Path, key_path: Path, ca_cert: x509.Certificate, hosts: tuple[str, ...]
) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.issuer != ca_cert.subject:
        return False
    remaining = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if remaining < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(
        sans.get_values_for_type(x509.DNSName)
    )
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    return wanted <= have


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace ``path`` with ``data``, created with ``mode`` (never wider, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)  # the umask may have narrowed it; state it exactly
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
