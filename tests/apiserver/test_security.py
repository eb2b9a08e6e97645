"""TLS material, token and kubeconfig: generated once, reused, private, and valid for TLS."""

from __future__ import annotations

import asyncio
import base64
import ssl
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from shoal.apiserver.security import (
    default_data_dir,
    ensure_credentials,
    tokens_equal,
    write_kubeconfig,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_are_generated_private_and_reused(tmp_path: Path) -> None:
    first = ensure_credentials(tmp_path)
    assert _mode(tmp_path / "pki" / "ca.key") == 0o600
    assert _mode(first.server_key) == 0o600
    assert _mode(tmp_path / "token") == 0o600
    assert len(first.token) >= 40
    assert first.token not in repr(first)
    second = ensure_credentials(tmp_path)
    assert second.token == first.token
    assert second.server_cert.read_bytes() == first.server_cert.read_bytes()


def test_serving_certificate_is_remade_for_a_new_address(tmp_path: Path) -> None:
    first = ensure_credentials(tmp_path).server_cert.read_bytes()
    second = ensure_credentials(tmp_path, hosts=["127.0.0.7"]).server_cert.read_bytes()
    assert first != second
    cert = x509.load_pem_x509_certificate(second)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.7" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert "localhost" in sans.get_values_for_type(x509.DNSName)


def test_kubeconfig_is_0600_and_complete(tmp_path: Path) -> None:
    credentials = ensure_credentials(tmp_path)
    path = tmp_path / "kubeconfig"
    write_kubeconfig(
        path, server="https://127.0.0.1:6443", ca_cert=credentials.ca_cert, token=credentials.token
    )
    assert _mode(path) == 0o600
    config = yaml.safe_load(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert (
        base64.b64decode(cluster["certificate-authority-data"]) == credentials.ca_cert.read_bytes()
    )
    assert config["users"][0]["user"]["token"] == credentials.token
    assert config["current-context"] == "shoal"


async def test_a_tls_client_trusting_the_ca_connects(tmp_path: Path) -> None:
    credentials = ensure_credentials(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(credentials.server_cert, credentials.server_key)
    client_context = ssl.create_default_context(cafile=str(credentials.ca_cert))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=client_context), 5
            )
            writer.write(b"hello\n")
            assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
            writer.close()
            await writer.wait_closed()


def test_tokens_compare_in_constant_time_and_exactly() -> None:
    assert tokens_equal("abc", "abc")
    assert not tokens_equal("abc", "abd")
    assert not tokens_equal("abc", "abcd")


def test_data_dir_honours_shoal_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHOAL_HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home"
    monkeypatch.delenv("SHOAL_HOME")
    assert default_data_dir() == Path.home() / ".shoal"
