"""Bring the local infrastructure up and down, or use servers that already exist.

A server is either *local* (a Tansu broker or redis-server that this module
starts on a loopback port, with its pid file and log in the state directory)
or *external* (named by ``CARTWHEEL_KAFKA_BOOTSTRAP`` or ``CARTWHEEL_REDIS_URL``;
never started or stopped here). Starting is idempotent: a server whose pid
file names a live process is reused, so ``up`` twice starts nothing new.

The local redis-server keeps its data in an append-only file in the state
directory, so ``down`` and ``up`` keep features, catalog records and slates.
The local Tansu broker keeps topics in memory only, so ``down`` loses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from urllib.parse import urlsplit

from services.common.errors import BrokerUnreachableError, InfrastructureError
from services.common.kafka import is_listening, wait_for_broker
from services.common.lifecycle import (
    check_directory_if_present,
    ensure_writable_directory,
)
from services.common.local_ports import local_kafka_bootstrap, local_redis_url
from services.infra.probe import (
    KAFKA,
    REDIS,
    ProbeProtocol,
    ProbeResult,
    probe,
    tls_listener,
)
from services.infra.processes import (
    LocalServer,
    check_port,
    start_broker,
    start_redis,
)
from services.infra.settings import InfraSettings

__all__ = [
    "DEFAULT_PROBE_TIMEOUT_SECONDS",
    "InfraManager",
    "ServerState",
    "ServerStatus",
]

logger = logging.getLogger(__name__)

_BROKER_READY_TIMEOUT_SECONDS = 20.0
DEFAULT_PROBE_TIMEOUT_SECONDS = 2.0
_STATE_DIR_VARIABLE = "CARTWHEEL_INFRA_STATE_DIR"
_KAFKA_VARIABLE = "CARTWHEEL_KAFKA_BOOTSTRAP"
_REDIS_VARIABLE = "CARTWHEEL_REDIS_URL"
_STALE_REMOVED_NOTE = "removed the stale pid file and signalled no process"


class ServerState(StrEnum):
    """State of one server, as ``infra status`` reports it."""

    RUNNING = "running"
    STOPPED = "stopped"
    EXTERNAL = "external"
    UNREACHABLE = "unreachable"
    # The process runs, or the port accepts connections, but no complete
    # reply of the server's protocol came within the probe timeout: a
    # stopped (SIGSTOP), stuck or still starting server.
    NOT_RESPONDING = "not responding"
    # An external server replied, but not as a Kafka broker or Redis does:
    # the variable names another program's address.
    WRONG_PROTOCOL = "wrong protocol"
    # The pid file names a process that has exited, or one that is another
    # program or another instance listening elsewhere, or it contains no pid.
    # 'infra down' removes the file and signals no process.
    STALE = "stale pid file"
    # No pid file names a server, yet one replies on the local port in its
    # protocol: started from another state folder or by hand, or its pid
    # file was removed.
    # 'infra down' cannot stop it and 'infra up' cannot use the port.
    UNTRACKED = "running without pid file"
    # No pid file names a server, and the local port accepts connections but
    # no reply of the server's protocol comes: another program has the port.
    PORT_TAKEN = "port taken"


@dataclass(frozen=True)
class ServerStatus:
    """One server's address and state, as printed by the CLI."""

    name: str
    address: str
    state: ServerState
    pid: int | None = None
    note: str = ""

    def describe(self) -> str:
        """Return one line for the terminal, such as 'kafka 127.0.0.1:19092 running'."""
        if self.pid is not None:
            detail = f" (pid {self.pid})"
        elif self.state is ServerState.STALE:
            detail = " (unreadable)"
        else:
            detail = ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.name:<6} {self.address:<24} {self.state}{detail}{note}"


class InfraManager:
    """Start, stop and inspect the broker and redis-server that Cartwheel uses.

    Args:
        settings: the state directory, local ports and external servers.
    """

    def __init__(self, settings: InfraSettings) -> None:
        self._settings = settings
        state_dir = settings.state_dir
        self._broker = LocalServer.tansu(state_dir, settings.kafka_port)
        self._redis = LocalServer.redis(state_dir, settings.redis_port)

    @property
    def kafka_bootstrap(self) -> str:
        """The bootstrap address services should use."""
        if self._settings.is_kafka_external:
            return self._settings.kafka.bootstrap
        return local_kafka_bootstrap(self._settings.kafka_port)

    @property
    def redis_url(self) -> str:
        """The Redis URL services should use, password included when set."""
        if self._settings.is_redis_external:
            return self._settings.redis.url.get_secret_value()
        return local_redis_url(self._settings.redis_port)

    def up(self) -> list[ServerStatus]:
        """Start what is not running yet and wait until both servers respond.

        Raises:
            InvalidSettingsError: the state folder of a local server cannot be
                created or written.
            InfrastructureError: a server failed to start, a port is taken by
                another process, or an external server does not respond.
        """
        if self._local_servers():
            ensure_writable_directory(self._settings.state_dir, _STATE_DIR_VARIABLE)
        if self._settings.is_redis_external:
            self._require_external_redis()
        # Every port is checked before anything starts, so a taken Redis port
        # does not leave a new broker behind.
        if not self._settings.is_kafka_external:
            check_port(self._broker, "CARTWHEEL_INFRA_KAFKA_PORT")
        if not self._settings.is_redis_external:
            check_port(self._redis, "CARTWHEEL_INFRA_REDIS_PORT")
        if not self._settings.is_kafka_external:
            start_broker(
                self._settings.state_dir,
                self._settings.kafka_port,
                port_setting="CARTWHEEL_INFRA_KAFKA_PORT",
                stop_with_parent=False,
            )
        self._wait_for_broker()
        if not self._settings.is_redis_external:
            start_redis(
                self._settings.state_dir,
                self._settings.redis_port,
                port_setting="CARTWHEEL_INFRA_REDIS_PORT",
                stop_with_parent=False,
                is_persistent=True,
            )
        return self.status()

    def down(self) -> list[ServerStatus]:
        """Stop the local servers; external servers are left alone.

        Each stopped server is reported at the address its pid file records,
        which differs from the configured port when the port setting changed
        after ``up``. A stale pid file is removed without signalling any
        process. The server's line then adds that note to the state that
        the port shows now, and names the address that the file recorded
        when a server still replies there, so that :meth:`still_listening`
        finds it.

        Raises:
            InvalidSettingsError: the state folder of a local server exists
                but is not a directory, or its pid files cannot be read or removed.
        """
        if self._local_servers():
            check_directory_if_present(
                self._settings.state_dir, _STATE_DIR_VARIABLE, access="read and write"
            )
        stopped = {}
        removed_stale: dict[str, str | None] = {}
        for name, server in self._local_servers():
            if server.pid() is not None:
                stopped[name] = server.started_address() or server.address
            elif server.has_stale_pid_file():
                has_pid = server.recorded_pid() is not None
                removed_stale[name] = server.started_address() if has_pid else None
            server.stop()
        statuses = []
        for status in self.status():
            if status.name in stopped and status.state is ServerState.STOPPED:
                status = replace(status, address=stopped[status.name])
            if status.name in removed_stale:
                status = _probe_recorded_address(status, removed_stale[status.name])
                status = replace(status, note=_STALE_REMOVED_NOTE)
            statuses.append(status)
        return statuses

    def still_listening(self, statuses: list[ServerStatus]) -> list[ServerStatus]:
        """Return the local servers in ``statuses`` whose port accepts connections.

        After :meth:`down` these are servers that no pid file named, such as
        one whose pid file contained no pid or the pid of another process.
        The user must find and stop them by hand, because a process is
        signalled only when it is proven to be the server of this state folder.
        """
        local = {name for name, _ in self._local_servers()}
        return [
            status
            for status in statuses
            if status.name in local and status.state in _LISTENING_STATES
        ]

    def status(
        self, probe_timeout_seconds: float = DEFAULT_PROBE_TIMEOUT_SECONDS
    ) -> list[ServerStatus]:
        """Return the state of the broker and of redis-server, without changing it.

        A server that runs, or an external one that accepts connections, is
        also sent a protocol request (see :mod:`services.infra.probe`), and is
        NOT_RESPONDING when no reply comes within ``probe_timeout_seconds``.

        Raises:
            InvalidSettingsError: the state folder of a local server exists
                but is not a directory, or its pid files cannot be read.
        """
        if self._local_servers():
            check_directory_if_present(self._settings.state_dir, _STATE_DIR_VARIABLE)
        return [
            self._status(
                "kafka",
                self._broker,
                self._settings.is_kafka_external,
                probe_timeout_seconds,
            ),
            self._status(
                "redis",
                self._redis,
                self._settings.is_redis_external,
                probe_timeout_seconds,
            ),
        ]

    def _wait_for_broker(self) -> None:
        kafka = self._settings.kafka.model_copy(
            update={"bootstrap": self.kafka_bootstrap}
        )
        try:
            wait_for_broker(kafka, timeout_seconds=_BROKER_READY_TIMEOUT_SECONDS)
        except BrokerUnreachableError as exc:
            # The shared message suggests 'infra up' or setting the variable,
            # which fits neither this command nor a variable already set.
            endpoints = kafka.bootstrap.split(",")
            if self._settings.is_kafka_external and not any(
                is_listening(endpoint) for endpoint in endpoints
            ):
                raise BrokerUnreachableError(
                    _external_server_message(
                        _KAFKA_VARIABLE, kafka.bootstrap, "no Kafka broker listens"
                    )
                ) from exc
            raise

    def _require_external_redis(self) -> None:
        """Raise unless the Redis server that the URL names replies to PING.

        It runs before any local server starts, so a failure leaves none behind.
        """
        timeout_seconds = DEFAULT_PROBE_TIMEOUT_SECONDS
        status = self._external_status("redis", REDIS, timeout_seconds)
        problems = {
            ServerState.UNREACHABLE: "no Redis server listens",
            ServerState.NOT_RESPONDING: "a server accepts connections but sends "
            f"no Redis reply within {timeout_seconds:g} s",
            ServerState.WRONG_PROTOCOL: "a server replies that is not Redis, or "
            "not Redis over TLS for a rediss:// URL",
        }
        if status.state in problems:
            raise InfrastructureError(
                _external_server_message(
                    _REDIS_VARIABLE, status.address, problems[status.state]
                )
            )

    def _local_servers(self) -> list[tuple[str, LocalServer]]:
        servers = []
        if not self._settings.is_kafka_external:
            servers.append(("kafka", self._broker))
        if not self._settings.is_redis_external:
            servers.append(("redis", self._redis))
        return servers

    def _status(
        self,
        name: str,
        server: LocalServer,
        is_external: bool,
        probe_timeout_seconds: float,
    ) -> ServerStatus:
        protocol = KAFKA if name == "kafka" else REDIS
        if is_external:
            return self._external_status(name, protocol, probe_timeout_seconds)
        pid = server.pid()
        address = server.started_address() or server.address
        if pid is None and server.has_stale_pid_file():
            recorded_pid = server.recorded_pid()
            if recorded_pid is None:
                # Without a pid, the rest of the file is no address either.
                address = server.address
            result = probe(server.address, protocol, probe_timeout_seconds)
            # The line shows the file's address, which may not be the port probed.
            port = (
                "the port"
                if address == server.address
                else f"the configured port {server.address}"
            )
            note = _PORT_NOTES[result].format(port=port)
            return ServerStatus(
                name, address, ServerState.STALE, recorded_pid, note=note
            )
        if pid is None:
            result = probe(server.address, protocol, probe_timeout_seconds)
            return ServerStatus(name, server.address, _UNTRACKED_STATES[result])
        result = probe(address, protocol, probe_timeout_seconds)
        state = (
            ServerState.RUNNING
            if result is ProbeResult.RESPONDED
            else ServerState.NOT_RESPONDING
        )
        return ServerStatus(name, address, state, pid)

    def _external_status(
        self, name: str, protocol: ProbeProtocol, probe_timeout_seconds: float
    ) -> ServerStatus:
        if name == "kafka":
            address = self.kafka_bootstrap
            is_tls = self._settings.kafka.security_protocol in ("SSL", "SASL_SSL")
        else:
            address = _redact(self.redis_url)
            is_tls = urlsplit(address).scheme == "rediss"
        if is_tls:
            protocol = tls_listener(protocol)
        results = set()
        for endpoint in _endpoints(name, address):
            results.add(probe(endpoint, protocol, probe_timeout_seconds))
            if ProbeResult.RESPONDED in results:
                return ServerStatus(name, address, ServerState.EXTERNAL)
        if ProbeResult.OTHER_PROTOCOL in results:
            state = ServerState.WRONG_PROTOCOL
        elif ProbeResult.SILENT in results:
            state = ServerState.NOT_RESPONDING
        else:
            state = ServerState.UNREACHABLE
        return ServerStatus(name, address, state)


# The state of a local server that no pid file names, by what its port shows.
_UNTRACKED_STATES = {
    ProbeResult.RESPONDED: ServerState.UNTRACKED,
    ProbeResult.OTHER_PROTOCOL: ServerState.PORT_TAKEN,
    ProbeResult.SILENT: ServerState.PORT_TAKEN,
    ProbeResult.UNREACHABLE: ServerState.STOPPED,
}

# States of a local server whose port still accepts connections.
_LISTENING_STATES = frozenset(
    {
        ServerState.RUNNING,
        ServerState.NOT_RESPONDING,
        ServerState.UNTRACKED,
        ServerState.PORT_TAKEN,
    }
)

# Notes on the configured port, for the line of a stale pid file; {port}
# names it.
_PORT_NOTES = {
    ProbeResult.RESPONDED: "a server that the file does not name replies on {port}",
    ProbeResult.OTHER_PROTOCOL: "another program has {port}",
    ProbeResult.SILENT: "another program has {port}",
    ProbeResult.UNREACHABLE: "",
}


def _probe_recorded_address(status: ServerStatus, recorded: str | None) -> ServerStatus:
    """Probe the address a removed stale pid file recorded, when not probed yet.

    The file may come from servers started on other ports, such as the
    demo's, so a server left running there is not on the configured port.
    """
    if recorded is None or recorded == status.address:
        return status
    if status.state is not ServerState.STOPPED:
        return status
    protocol = KAFKA if status.name == "kafka" else REDIS
    result = probe(recorded, protocol, DEFAULT_PROBE_TIMEOUT_SECONDS)
    if result is ProbeResult.UNREACHABLE:
        return status
    return replace(status, address=recorded, state=_UNTRACKED_STATES[result])


def _external_server_message(variable: str, value: str, problem: str) -> str:
    local = "broker" if variable == _KAFKA_VARIABLE else "redis-server"
    return (
        f"{variable}={value!r} points at an address where {problem}; "
        f"'cartwheel infra up' starts a local {local} only when {variable} is "
        "unset, so start or fix the server at that address, set the variable "
        "to one that works, or unset it"
    )


def _endpoints(name: str, address: str) -> list[str]:
    if name == "kafka":
        return address.split(",")
    parts = urlsplit(address)
    return [f"{parts.hostname}:{parts.port or 6379}"]


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":**********@")
    return parts._replace(netloc=netloc).geturl()
