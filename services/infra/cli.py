"""``cartwheel infra up|down|status`` and ``cartwheel topics create``.

Results go to stdout, one server or topic per line; logs go to stderr.
"""

from __future__ import annotations

import argparse
import shlex

from services.cli.arguments import positive_number_at_most
from services.common.entrypoint import write_error
from services.common.kafka import create_topics, standard_topics, wait_for_broker
from services.common.settings import load_settings
from services.infra.manager import (
    DEFAULT_PROBE_TIMEOUT_SECONDS,
    InfraManager,
    ServerState,
    ServerStatus,
)
from services.infra.settings import InfraSettings

__all__ = ["register"]

_PROGRAM = "cartwheel"
_BROKER_TIMEOUT_SECONDS = 10.0
_MAX_PROBE_TIMEOUT_SECONDS = 60.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``infra`` and ``topics`` commands to the ``cartwheel`` parser."""
    infra = subparsers.add_parser(
        "infra",
        help="start, stop or inspect the local Kafka broker and redis-server",
        description=(
            "Run a Tansu broker and a redis-server on loopback ports, with pid "
            "files and logs under CARTWHEEL_INFRA_STATE_DIR (default .cartwheel). "
            "redis-server keeps its data there too, in an append-only file, "
            "so 'infra down' and 'infra up' keep it; Tansu keeps topics in "
            "memory, so they are lost. "
            "Ports: CARTWHEEL_INFRA_KAFKA_PORT (19092) and "
            "CARTWHEEL_INFRA_REDIS_PORT (16379); every command uses these "
            "servers by default. When CARTWHEEL_KAFKA_BOOTSTRAP or "
            "CARTWHEEL_REDIS_URL is set, that server is used instead, by every "
            "command, and none is started."
        ),
    )
    actions = infra.add_subparsers(
        dest="infra_command", required=True, metavar="COMMAND"
    )
    up = actions.add_parser(
        "up", help="start what is not running and wait until both servers respond"
    )
    up.set_defaults(handler=_up)
    down = actions.add_parser(
        "down",
        help="stop the local servers (external servers are left alone)",
        description="Stop the servers that the pid files in "
        "CARTWHEEL_INFRA_STATE_DIR name, then print each server's state as "
        "'infra status' does. A stale pid file is removed and no process is "
        "signalled; the server's line says so. Exits with 1, after one error "
        "line per server on stderr, when a local server's port, or the "
        "address a stale pid file recorded, still accepts connections, "
        "and with 0 otherwise.",
    )
    down.set_defaults(handler=_down)
    status = actions.add_parser(
        "status",
        help="show each server's address and state; exit 1 when one is not up",
        description="Print one line per server: running or stopped for a local "
        "server, external or unreachable for one named by "
        "CARTWHEEL_KAFKA_BOOTSTRAP or CARTWHEEL_REDIS_URL, and not responding "
        "for a server that accepts connections but does not reply to a request "
        "(Kafka ApiVersions, Redis PING) within --timeout, such as a stopped "
        "(SIGSTOP) process, and wrong protocol for an external address where "
        "a server of another kind replies. A pid file that names a process "
        "which has exited, or which is not the server started at the recorded "
        "address, shows as stale pid file, and one without a pid as stale pid "
        "file (unreadable). "
        "'infra down' removes such a file and signals no process. Without a "
        "pid file of a running server, the local port is probed too: running "
        "without pid file when a Kafka broker or Redis replies there (one that "
        "'infra down' cannot stop), port taken when the port accepts "
        "connections but no Kafka or Redis reply comes. Exits with 0 when "
        "every server is running or external, and with 1 otherwise.",
    )
    status.add_argument(
        "--timeout",
        type=positive_number_at_most(_MAX_PROBE_TIMEOUT_SECONDS),
        default=DEFAULT_PROBE_TIMEOUT_SECONDS,
        help="seconds to wait for each server's connection and reply, above 0 "
        f"and at most {_MAX_PROBE_TIMEOUT_SECONDS:g} (default: "
        f"{DEFAULT_PROBE_TIMEOUT_SECONDS:g})",
    )
    status.set_defaults(handler=_status)

    topics = subparsers.add_parser(
        "topics",
        help="provision Kafka topics",
        description=(
            "Topic names and partition counts come from CARTWHEEL_TOPIC_* "
            "(CARTWHEEL_TOPIC_PARTITIONS, default 6)."
        ),
    )
    topic_actions = topics.add_subparsers(
        dest="topics_command", required=True, metavar="COMMAND"
    )
    create = topic_actions.add_parser(
        "create",
        help="create every Cartwheel topic that is missing; existing ones are "
        "kept as they are and must have the configured partition count",
        description="Create every Cartwheel topic that is missing, with "
        "CARTWHEEL_TOPIC_PARTITIONS partitions (the models topic gets 1). "
        "Existing topics are kept as they are, messages included. A topic "
        "that exists with another partition count stops the command with an "
        "error, because its count cannot be changed here: set "
        "CARTWHEEL_TOPIC_PARTITIONS to the count it has.",
    )
    create.set_defaults(handler=_create_topics)


def _manager() -> tuple[InfraManager, InfraSettings]:
    settings = load_settings(InfraSettings)
    return InfraManager(settings), settings


def _up(args: argparse.Namespace) -> int:
    manager, settings = _manager()
    _print_statuses(manager.up())
    for name, value in _exports(manager, settings):
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _exports(manager: InfraManager, settings: InfraSettings) -> list[tuple[str, str]]:
    """Return the variables that lead another shell to the servers now up.

    The state folder and the ports go with the addresses, so that 'infra
    down' in a shell with these exports finds the pid files and still
    recognises the servers as the local ones. The folder is exported even
    when it is the default, and made absolute, because the default is
    relative to the working directory: the exports then work from any folder.
    """
    exports = []
    has_local = not (settings.is_kafka_external and settings.is_redis_external)
    if has_local:
        exports.append(
            ("CARTWHEEL_INFRA_STATE_DIR", str(settings.state_dir.absolute()))
        )
    if not settings.is_kafka_external:
        exports.append(("CARTWHEEL_INFRA_KAFKA_PORT", str(settings.kafka_port)))
    exports.append(("CARTWHEEL_KAFKA_BOOTSTRAP", manager.kafka_bootstrap))
    if not settings.is_redis_external:
        exports.append(("CARTWHEEL_INFRA_REDIS_PORT", str(settings.redis_port)))
        exports.append(("CARTWHEEL_REDIS_URL", manager.redis_url))
    return exports


def _down(args: argparse.Namespace) -> int:
    manager, _ = _manager()
    statuses = manager.down()
    _print_statuses(statuses)
    still_listening = manager.still_listening(statuses)
    for status in still_listening:
        write_error(_PROGRAM, _still_listening_message(status))
    return 1 if still_listening else 0


def _still_listening_message(status: ServerStatus) -> str:
    port = status.address.rpartition(":")[2]
    return (
        f"{status.name} at {status.address} still accepts connections after "
        f"'infra down' ({status.state}), and no pid file names its process; "
        f'find it with "ss -ltnp \'sport = :{port}\'" or "fuser {port}/tcp" '
        "and stop it by its pid if it is yours"
    )


def _status(args: argparse.Namespace) -> int:
    manager, _ = _manager()
    statuses = manager.status(probe_timeout_seconds=args.timeout)
    _print_statuses(statuses)
    is_up = all(
        s.state in (ServerState.RUNNING, ServerState.EXTERNAL) for s in statuses
    )
    return 0 if is_up else 1


def _create_topics(args: argparse.Namespace) -> int:
    manager, settings = _manager()
    kafka = settings.kafka.model_copy(update={"bootstrap": manager.kafka_bootstrap})
    wait_for_broker(kafka, timeout_seconds=_BROKER_TIMEOUT_SECONDS)
    specs = standard_topics(settings.topics)
    created = set(
        create_topics(
            kafka, specs, replication_factor=settings.topics.replication_factor
        )
    )
    for spec in specs:
        outcome = "created" if spec.name in created else "exists"
        print(f"{spec.name:<32} partitions={spec.partitions:<4} {outcome}")
    print(f"kafka  {kafka.bootstrap}")
    return 0


def _print_statuses(statuses: list[ServerStatus]) -> None:
    for status in statuses:
        print(status.describe())
