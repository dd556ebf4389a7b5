from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.errors import BrokerUnreachableError, InfrastructureError
from services.common.settings import KafkaSettings, RedisSettings
from services.infra import LocalServer, find_free_port
from services.infra import manager as infra_manager
from services.infra.manager import InfraManager, ServerState
from services.infra.settings import InfraSettings


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("CARTWHEEL_KAFKA_BOOTSTRAP", "CARTWHEEL_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(find_free_port()))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))
    return tmp_path


def test_status_reports_stopped_servers_without_starting_any(
    isolated_env: Path,
) -> None:
    statuses = InfraManager(InfraSettings()).status()

    assert [s.state for s in statuses] == [ServerState.STOPPED] * 2
    assert list(isolated_env.iterdir()) == []


def test_status_reports_unreachable_external_servers(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", f"127.0.0.1:{find_free_port()}")
    monkeypatch.setenv(
        "CARTWHEEL_REDIS_URL", f"redis://:pw@127.0.0.1:{find_free_port()}/0"
    )

    statuses = InfraManager(InfraSettings()).status()

    assert [s.state for s in statuses] == [ServerState.UNREACHABLE] * 2
    assert ":**********@" in statuses[1].address


def test_status_reports_silent_external_broker(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    # The taken port's socket listens but never accepts, so it never replies.
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", f"127.0.0.1:{taken_port}")

    kafka = InfraManager(InfraSettings()).status(probe_timeout_seconds=0.2)[0]

    assert kafka.state is ServerState.NOT_RESPONDING
    assert kafka.describe().endswith(" not responding")


def test_status_reports_pid_file_of_unrelated_process_stale(
    isolated_env: Path,
) -> None:
    # pid 1 is alive but is not a tansu process.
    (isolated_env / "tansu.pid").write_text("1\n")

    kafka = InfraManager(InfraSettings()).status()[0]

    assert kafka.state is ServerState.STALE
    assert kafka.describe().endswith(" stale pid file (pid 1)")


def test_status_reports_unreadable_pid_file_stale(isolated_env: Path) -> None:
    (isolated_env / "tansu.pid").write_text("abc 127.0.0.1:1\n")
    manager = InfraManager(InfraSettings())

    kafka = manager.status()[0]

    assert kafka.state is ServerState.STALE
    assert kafka.pid is None
    assert kafka.address == manager.kafka_bootstrap
    assert kafka.describe().endswith(" stale pid file (unreadable)")


def test_down_removes_unreadable_pid_file(isolated_env: Path) -> None:
    (isolated_env / "redis.pid").write_text("")

    statuses = InfraManager(InfraSettings()).down()

    assert not (isolated_env / "redis.pid").exists()
    assert [s.state for s in statuses] == [ServerState.STOPPED] * 2
    assert statuses[0].note == ""
    assert (
        statuses[1]
        .describe()
        .endswith(" stopped; removed the stale pid file and signalled no process")
    )


def test_printed_local_addresses_are_not_external(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = InfraManager(InfraSettings())
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", local.kafka_bootstrap)
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", local.redis_url)

    statuses = InfraManager(InfraSettings()).status()

    assert [s.state for s in statuses] == [ServerState.STOPPED] * 2


def test_local_addresses_are_command_defaults(isolated_env: Path) -> None:
    manager = InfraManager(InfraSettings())

    assert manager.kafka_bootstrap == KafkaSettings().bootstrap
    assert manager.redis_url == RedisSettings().url.get_secret_value()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """Listen on a loopback port for the test, as another program would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_up_names_variable_of_taken_kafka_port(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(taken_port))

    with pytest.raises(InfrastructureError) as caught:
        InfraManager(InfraSettings()).up()

    assert str(caught.value) == (
        f"port 127.0.0.1:{taken_port} is taken by another process; stop that "
        "process or set CARTWHEEL_INFRA_KAFKA_PORT to a free port"
    )
    assert not (isolated_env / "tansu.pid").exists()


def test_up_names_variable_of_taken_redis_port(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    # An external broker, whose readiness check is skipped, lets up() go on
    # to redis-server without starting Tansu.
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", f"127.0.0.1:{find_free_port()}")
    monkeypatch.setattr(infra_manager, "wait_for_broker", lambda *_, **__: None)
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(taken_port))

    with pytest.raises(InfrastructureError) as caught:
        InfraManager(InfraSettings()).up()

    assert str(caught.value) == (
        f"port 127.0.0.1:{taken_port} is taken by another process; stop that "
        "process or set CARTWHEEL_INFRA_REDIS_PORT to a free port"
    )
    assert not (isolated_env / "redis.pid").exists()


def test_status_reports_taken_local_port(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(taken_port))

    redis = InfraManager(InfraSettings()).status(probe_timeout_seconds=0.2)[1]

    assert redis.state is ServerState.PORT_TAKEN
    assert redis.describe().endswith(" port taken")


# The second pid file records another address, so the line names the configured port.
@pytest.mark.parametrize(
    ("pid_file", "suffix"),
    [
        ("garbage\n", " stale pid file (unreadable); another program has the port"),
        ("999999 127.0.0.1:9\n", "; another program has the configured port {port}"),
    ],
)
def test_status_stale_pid_taken_port(
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    taken_port: int,
    pid_file: str,
    suffix: str,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(taken_port))
    (isolated_env / "redis.pid").write_text(pid_file)

    redis = InfraManager(InfraSettings()).status(probe_timeout_seconds=0.2)[1]

    assert redis.state is ServerState.STALE
    address = f"127.0.0.1:{taken_port}"
    assert redis.describe().endswith(suffix.format(port=address))


def test_up_checks_redis_port_first(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(taken_port))
    settings = InfraSettings()

    try:
        with pytest.raises(InfrastructureError, match="CARTWHEEL_INFRA_REDIS_PORT"):
            InfraManager(settings).up()
        is_broker_started = (isolated_env / "tansu.pid").exists()
    finally:
        LocalServer.tansu(isolated_env, settings.kafka_port).stop()

    assert not is_broker_started


def test_up_says_external_bootstrap_has_no_broker(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = f"127.0.0.1:{find_free_port()}"
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", bootstrap)

    with pytest.raises(BrokerUnreachableError) as caught:
        InfraManager(InfraSettings()).up()

    assert str(caught.value) == (
        f"CARTWHEEL_KAFKA_BOOTSTRAP='{bootstrap}' points at an address where no "
        "Kafka broker listens; 'cartwheel infra up' starts a local broker only "
        "when CARTWHEEL_KAFKA_BOOTSTRAP is unset, so start or fix the server at "
        "that address, set the variable to one that works, or unset it"
    )
    assert list(isolated_env.glob("*.pid")) == []


def test_up_says_external_redis_url_has_no_server_before_starting_any(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = find_free_port()
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", f"redis://:pw@127.0.0.1:{port}/0")

    with pytest.raises(InfrastructureError) as caught:
        InfraManager(InfraSettings()).up()

    assert str(caught.value) == (
        f"CARTWHEEL_REDIS_URL='redis://:**********@127.0.0.1:{port}/0' points at "
        "an address where no Redis server listens; 'cartwheel infra up' starts "
        "a local redis-server only when CARTWHEEL_REDIS_URL is unset, so start "
        "or fix the server at that address, set the variable to one that "
        "works, or unset it"
    )
    assert list(isolated_env.glob("*.pid")) == []


class _HttpLikeHandler(socketserver.BaseRequestHandler):
    """Reply to any request with an HTTP error, as a web server does."""

    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def http_port() -> Iterator[int]:
    """Serve HTTP-like replies on a loopback port for the test."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HttpLikeHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield int(server.server_address[1])
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.parametrize(("name", "index"), [("KAFKA", 0), ("REDIS", 1)])
def test_status_reports_local_http_port_taken(
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    http_port: int,
    name: str,
    index: int,
) -> None:
    monkeypatch.setenv(f"CARTWHEEL_INFRA_{name}_PORT", str(http_port))

    status = InfraManager(InfraSettings()).status(probe_timeout_seconds=5)[index]

    assert status.state is ServerState.PORT_TAKEN
    assert status.address == f"127.0.0.1:{http_port}"
    assert status.describe().endswith(" port taken")


def test_status_reports_external_http_server_as_wrong_protocol(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, http_port: int
) -> None:
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", f"redis://127.0.0.1:{http_port}/0")

    redis = InfraManager(InfraSettings()).status(probe_timeout_seconds=5)[1]

    assert redis.state is ServerState.WRONG_PROTOCOL
    assert redis.describe().endswith(" wrong protocol")


def test_up_says_external_redis_url_names_another_kind_of_server(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, http_port: int
) -> None:
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", f"redis://127.0.0.1:{http_port}/0")

    with pytest.raises(InfrastructureError, match="a server replies that is not Redis"):
        InfraManager(InfraSettings()).up()

    assert list(isolated_env.glob("*.pid")) == []
