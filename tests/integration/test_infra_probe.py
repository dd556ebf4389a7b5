"""The protocol probe of ``infra status`` against real Tansu and redis-server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.cli.__main__ import main
from services.infra import LocalServer, find_free_port, processes
from services.infra.probe import KAFKA, REDIS, ProbeResult, probe
from tests.certificates import make_certificates
from tests.tls_proxy import TlsProxy

pytestmark = pytest.mark.integration


def _redis_address(redis_url: str) -> str:
    return urlsplit(redis_url).netloc


def test_probe_accepts_tansu(kafka_bootstrap: str) -> None:
    result = probe(kafka_bootstrap, KAFKA, timeout_seconds=5)

    assert result is ProbeResult.RESPONDED


def test_probe_accepts_redis_server(redis_url: str) -> None:
    result = probe(_redis_address(redis_url), REDIS, timeout_seconds=5)

    assert result is ProbeResult.RESPONDED


def test_probe_rejects_redis_server_as_kafka(redis_url: str) -> None:
    result = probe(_redis_address(redis_url), KAFKA, timeout_seconds=0.5)

    assert result is not ProbeResult.RESPONDED


def test_probe_rejects_tansu_as_redis(kafka_bootstrap: str) -> None:
    result = probe(kafka_bootstrap, REDIS, timeout_seconds=0.5)

    assert result is not ProbeResult.RESPONDED


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server that requires a password, as its ``host:port``."""
    port = find_free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--requirepass",
            "secret",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        processes._wait_until_listening(LocalServer.redis(tmp_path, port), process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_probe_accepts_noauth_reply_of_redis_server(password_redis: str) -> None:
    result = probe(password_redis, REDIS, timeout_seconds=5)

    assert result is ProbeResult.RESPONDED


@pytest.fixture
def tls_broker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[TlsProxy]:
    """A TLS proxy in front of the session's broker, requiring client certificates."""
    certificates = make_certificates(tmp_path / "certificates")
    host, _, port = kafka_bootstrap.rpartition(":")
    with TlsProxy(
        (host, int(port)),
        certificate=certificates.server_certificate,
        key=certificates.server_key,
        client_ca=certificates.ca,
    ) as proxy:
        yield proxy


def test_infra_status_counts_tls_broker_as_external(
    tls_broker: TlsProxy,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", f"127.0.0.1:{tls_broker.port}")
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", redis_url)

    status = main(["infra", "status", "--timeout", "5"])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].endswith(" external")
    assert lines[1].endswith(" external")
