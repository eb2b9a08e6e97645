"""The TLS sidecar: the reload decision as a transcript, and the sidecar on 127.0.0.1 with real
certificates: forwarding with X-Forwarded-Proto, rotation under load with zero failed requests,
client certificates required and refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from shoal.components.sidecars.tls import (
    CertificateError,
    CertificateStore,
    ReloadState,
    TLSSidecarSettings,
    file_stamp,
    server_context,
    tls_sidecar,
)
from shoal.dataplane.driver import ProxyServer
from tests.components.http_app import App, request

from .sidecar_certs import Authority, authority, write_pair

A = (1, 10, 100, 1000)
B = (1, 11, 100, 2000)
K1 = (1, 20, 50, 1000)
K2 = (1, 21, 50, 2000)


def test_reload_state_transcript() -> None:
    state = ReloadState()
    assert state.observe([A, K1]) == "load"
    state.loaded([A, K1])
    assert state.observe([A, K1]) == "keep"
    # The certificate changed before the key (a hand copy): the load fails, the old pair stays.
    assert state.observe([B, K1]) == "load"
    state.failed([B, K1], "mismatch")
    assert state.observe([B, K1]) == "keep"  # not retried until something changes
    assert state.in_service == (A, K1)
    # A file missing mid-swap: keep serving.
    assert state.observe([None, K2]) == "keep"
    assert state.observe([B, K2]) == "load"
    state.loaded([B, K2])
    assert (state.in_service, state.failed_stamps, state.last_error) == ((B, K2), None, "")
    # Going back to an older pair is a change too.
    assert state.observe([A, K1]) == "load"


def test_file_stamp_follows_symlinks(tmp_path: Path) -> None:
    assert file_stamp(str(tmp_path / "missing")) is None
    (tmp_path / "one").write_text("1")
    (tmp_path / "two").write_text("22")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "one")
    before = file_stamp(str(link))
    swap = tmp_path / "swap"
    swap.symlink_to(tmp_path / "two")
    swap.replace(link)  # the kubelet's atomic ..data swap
    assert file_stamp(str(link)) != before
    assert file_stamp(str(link)) == file_stamp(str(tmp_path / "two"))


@pytest.fixture(scope="module")
def ca() -> Authority:
    return authority("test server CA")


def test_bad_files_are_named(tmp_path: Path, ca: Authority) -> None:
    cert, key = ca.issue("one")
    _, other_key = ca.issue("two")
    cert_path, key_path = write_pair(tmp_path, cert, other_key)
    with pytest.raises(CertificateError, match="not a matching PEM"):
        server_context(str(cert_path), str(key_path))
    with pytest.raises(CertificateError, match=r"missing\.crt: no such file"):
        server_context(str(tmp_path / "missing.crt"), str(key_path))
    write_pair(tmp_path, cert, key)
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(CertificateError, match=r"ca\.pem: not a PEM CA bundle"):
        server_context(str(cert_path), str(key_path), str(tmp_path / "ca.pem"))
    settings = TLSSidecarSettings(cert=str(tmp_path / "nope.crt"), key=str(key_path))
    with pytest.raises(CertificateError, match=r"nope\.crt"):
        CertificateStore(settings)


def client_context(
    ca: Authority, tmp_path: Path, pair: tuple[bytes, bytes] | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path / "server-ca.pem")))
    if pair is not None:
        cert_path, key_path = write_pair(tmp_path, *pair, stem="client")
        context.load_cert_chain(str(cert_path), str(key_path))
    return context


@contextlib.asynccontextmanager
async def sidecar(
    settings: TLSSidecarSettings,
) -> AsyncIterator[tuple[ProxyServer, CertificateStore]]:
    server, store = tls_sidecar(settings)
    await server.start("127.0.0.1", 0, ssl=store.listening)
    try:
        yield server, store
    finally:
        await server.shutdown(2.0)


async def test_forwards_with_forwarded_proto(tmp_path: Path, ca: Authority) -> None:
    cert_path, key_path = write_pair(tmp_path, *ca.issue("localhost"))
    async with App() as app:
        settings = TLSSidecarSettings(cert=str(cert_path), key=str(key_path), upstream=app.address)
        async with sidecar(settings) as (server, _):
            host, port = server.address
            status, _, body = await request(
                host,
                port,
                "/hello",
                ssl=client_context(ca, tmp_path),
                headers={"X-Forwarded-Proto": "http"},
            )
    assert status == 200
    seen = json.loads(body)
    assert seen["target"] == "/hello"
    assert seen["headers"]["x-forwarded-proto"] == "https"  # the client's claim is replaced
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"


async def served_name(host: str, port: int, context: ssl.SSLContext) -> str:
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname="localhost"), 5.0
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        cn = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await writer.wait_closed()
    return cn


async def test_rotation_under_load_has_no_failed_request(tmp_path: Path, ca: Authority) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    cert_path, key_path = write_pair(secret, *ca.issue("gen-0"))
    context = client_context(ca, tmp_path)
    async with App() as app:
        settings = TLSSidecarSettings(
            cert=str(cert_path), key=str(key_path), upstream=app.address, reload_interval=0.02
        )
        async with sidecar(settings) as (server, store):
            host, port = server.address
            stop = asyncio.Event()
            results: list[int] = []
            failures: list[BaseException] = []

            async def client() -> None:
                # Every request is a new connection, so each one is a new handshake.
                while not stop.is_set():
                    try:
                        status, _, _ = await request(host, port, "/", ssl=context)
                        results.append(status)
                    except (OSError, ssl.SSLError, TimeoutError) as error:
                        failures.append(error)

            async with asyncio.TaskGroup() as group:
                group.create_task(store.watch(stop))
                for _ in range(4):
                    group.create_task(client())
                for generation in range(1, 6):
                    cert, key = ca.issue(f"gen-{generation}")
                    if generation % 2:
                        # Non-atomic: the certificate lands first; that pair must not go live.
                        write_pair(secret, cert, ca.issue("stray")[1])
                        store.check()
                        await asyncio.sleep(0.02)
                    write_pair(secret, cert, key)
                    deadline = asyncio.get_running_loop().time() + 5.0
                    while await served_name(host, port, context) != f"CN=gen-{generation}":
                        assert asyncio.get_running_loop().time() < deadline
                        await asyncio.sleep(0.01)
                    count = len(results)
                    while len(results) < count + 20:  # requests on the new pair, under load
                        assert asyncio.get_running_loop().time() < deadline + 5.0
                        await asyncio.sleep(0.01)
                stop.set()
    assert failures == []
    assert results
    assert set(results) == {200}
    assert store.reloads == 5
    assert store.failures >= 1  # the mismatched pairs were refused, not served


async def test_client_certificates_required(tmp_path: Path, ca: Authority) -> None:
    clients = authority("client CA")
    strangers = authority("another CA")
    cert_path, key_path = write_pair(tmp_path, *ca.issue("localhost"))
    client_ca = clients.write(tmp_path / "client-ca.pem")
    async with App() as app:
        settings = TLSSidecarSettings(
            cert=str(cert_path), key=str(key_path), upstream=app.address, client_ca=str(client_ca)
        )
        async with sidecar(settings) as (server, _):
            host, port = server.address
            (tmp_path / "good").mkdir()
            good = client_context(ca, tmp_path / "good", clients.issue("alice", client=True))
            status, _, _ = await request(host, port, ssl=good)
            assert status == 200
            for context in (
                client_context(ca, tmp_path),  # no certificate
                client_context(ca, tmp_path, strangers.issue("mallory", client=True)),
            ):
                # TLS 1.3 reports the refusal after the client's handshake, on the first read.
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    await request(host, port, ssl=context)
    assert len(app.requests) == 1
