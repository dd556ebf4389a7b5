"""cartwheel infra up/down/status against real Tansu and redis-server processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from services.cli.__main__ import main
from services.common.kafka import TopicSpec, create_topics
from services.common.settings import KafkaSettings, child_environment
from services.infra import LocalServer, find_free_port, processes

pytestmark = pytest.mark.integration


@pytest.fixture
def infra_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("CARTWHEEL_KAFKA_BOOTSTRAP", "CARTWHEEL_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(find_free_port()))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))
    yield tmp_path
    main(["infra", "down"])


def _pids(state_dir: Path) -> dict[str, int]:
    return {
        path.stem: int(path.read_text().split()[0]) for path in state_dir.glob("*.pid")
    }


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_infra_up_twice_keeps_the_first_servers(
    infra_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["infra", "up"]) == 0
    first = _pids(infra_env)

    assert main(["infra", "up"]) == 0

    assert _pids(infra_env) == first
    assert set(first) == {"tansu", "redis"}
    assert "running" in capsys.readouterr().out


def test_infra_up_servers_outlive_the_command(infra_env: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "services.cli", "infra", "up"],
        env=child_environment({}),
        capture_output=True,
        check=True,
    )

    status = main(["infra", "status"])

    assert status == 0


@pytest.fixture
def orphans() -> Iterator[list[int]]:
    """Pids of servers whose pid file the test garbled, stopped at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture
def local_redis(infra_env: Path) -> Iterator[tuple[int, int]]:
    """The state folder's redis-server alone, as (pid, port); stopped at teardown.

    The test may garble its pid file, so teardown stops it by the pid read
    at start.
    """
    port = int(os.environ["CARTWHEEL_INFRA_REDIS_PORT"])
    server = processes.start_redis(infra_env, port)
    pid = server.pid()
    assert pid is not None
    yield pid, port
    os.kill(pid, signal.SIGTERM)
    processes._wait_until_gone(pid, timeout_seconds=10)


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    "pid_file",
    [
        pytest.param(lambda port: "abc\n", id="letters"),
        pytest.param(lambda port: "", id="empty"),
        pytest.param(lambda port: f"{os.getpid()} 127.0.0.1:{port}\n", id="unrelated"),
        pytest.param(lambda port: f"{_exited_pid()} 127.0.0.1:{port}\n", id="exited"),
    ],
)
def test_down_fails_while_unnamed_redis_listens(
    infra_env: Path,
    local_redis: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
    pid_file: Callable[[int], str],
) -> None:
    pid, port = local_redis
    (infra_env / "redis.pid").write_text(pid_file(port))

    status = main(["infra", "down"])

    output = capsys.readouterr()
    assert status == 1
    assert output.out.splitlines()[1].endswith(
        " running without pid file; removed the stale pid file and signalled no process"
    )
    assert output.err == (
        f"cartwheel: error: redis at 127.0.0.1:{port} still accepts connections "
        "after 'infra down' (running without pid file), and no pid file names its "
        f"process; find it with \"ss -ltnp 'sport = :{port}'\" or "
        f'"fuser {port}/tcp" and stop it by its pid if it is yours\n'
    )
    assert _is_alive(pid)


def test_down_fails_while_recorded_address_listens(
    infra_env: Path,
    local_redis: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, port = local_redis
    (infra_env / "redis.pid").write_text(f"{_exited_pid()} 127.0.0.1:{port}\n")
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))

    status = main(["infra", "down"])

    output = capsys.readouterr()
    assert status == 1
    assert f"redis at 127.0.0.1:{port} still accepts connections" in output.err
    assert output.out.splitlines()[1].startswith(f"redis  127.0.0.1:{port} ")


def test_infra_status_probes_port_without_pid_file(
    infra_env: Path, orphans: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["infra", "up"])
    orphans.append(_pids(infra_env)["redis"])
    (infra_env / "redis.pid").unlink()
    capsys.readouterr()

    status = main(["infra", "status"])

    redis_line = capsys.readouterr().out.splitlines()[1]
    assert status == 1
    assert redis_line.endswith(" running without pid file")


def test_infra_down_leaves_no_server_running(infra_env: Path) -> None:
    main(["infra", "up"])
    pids = _pids(infra_env)

    assert main(["infra", "down"]) == 0

    assert not any(_is_alive(pid) for pid in pids.values())
    assert list(infra_env.glob("*.pid")) == []
    assert main(["infra", "status"]) == 1


def test_infra_down_and_up_keep_redis_data(infra_env: Path) -> None:
    url = f"redis://127.0.0.1:{os.environ['CARTWHEEL_INFRA_REDIS_PORT']}/0"
    assert main(["infra", "up"]) == 0
    with redis.Redis.from_url(url) as client:
        client.set("cartwheel:test:kept", "1")
    first_pid = _pids(infra_env)["redis"]

    assert main(["infra", "down"]) == 0
    assert main(["infra", "up"]) == 0

    with redis.Redis.from_url(url) as client:
        value = client.get("cartwheel:test:kept")
    assert _pids(infra_env)["redis"] != first_pid
    assert value == b"1"


def test_start_redis_keeps_nothing_by_default(tmp_path: Path) -> None:
    port = find_free_port()
    server = processes.start_redis(tmp_path, port)
    with redis.Redis(host=server.host, port=server.port) as client:
        client.set("cartwheel:test:dropped", "1")
    server.stop()

    server = processes.start_redis(tmp_path, port)
    try:
        with redis.Redis(host=server.host, port=server.port) as client:
            dropped = client.get("cartwheel:test:dropped")
    finally:
        server.stop()

    assert dropped is None
    assert list(tmp_path.glob("appendonly*")) == []


def test_up_exports_work_in_another_shell(
    infra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Characters that a shell would split or expand must arrive unchanged.
    state_dir = infra_env / "state $HOME 'x'"
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(state_dir))
    main(["infra", "up"])
    pids = _pids(state_dir)
    exports = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("export ")
    ]
    # The other shell starts in another folder, without Cartwheel's variables.
    environment = {
        name: value
        for name, value in child_environment({}).items()
        if not name.upper().startswith("CARTWHEEL_")
    }
    script = "\n".join([*exports, f"exec {sys.executable} -m services.cli infra down"])

    stopped = subprocess.run(
        ["bash", "-c", script],
        cwd="/",
        env=environment,
        capture_output=True,
        text=True,
    )

    # The servers are children of this process, so they stay as zombies
    # until it reaps them, and os.kill(pid, 0) still finds them.
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.count(" stopped") == 2
    assert set(pids) == {"tansu", "redis"}
    assert list(state_dir.glob("*.pid")) == []


def test_infra_status_shows_started_ports(
    infra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kafka_port = os.environ["CARTWHEEL_INFRA_KAFKA_PORT"]
    redis_port = os.environ["CARTWHEEL_INFRA_REDIS_PORT"]
    main(["infra", "up"])
    capsys.readouterr()
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(find_free_port()))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))

    assert main(["infra", "status"]) == 0

    output = capsys.readouterr().out
    assert f"127.0.0.1:{kafka_port} " in output
    assert f"127.0.0.1:{redis_port} " in output


def test_infra_down_names_started_ports(
    infra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    redis_port = os.environ["CARTWHEEL_INFRA_REDIS_PORT"]
    main(["infra", "up"])
    pids = _pids(infra_env)
    capsys.readouterr()
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))

    assert main(["infra", "down"]) == 0

    output = capsys.readouterr().out
    assert f"127.0.0.1:{redis_port} " in output
    assert "stopped" in output
    assert not _is_alive(pids["redis"])


def test_infra_up_uses_external_servers_without_starting_any(
    infra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", redis_url)

    status = main(["infra", "up"])

    out = capsys.readouterr().out
    assert status == 0
    assert list(infra_env.glob("*.pid")) == []
    assert f"{kafka_bootstrap}" in out
    assert out.count("external") == 2


def test_topics_create_is_idempotent(
    infra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"t{os.urandom(4).hex()}"
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", kafka_bootstrap)
    for variable, stem in [
        ("EVENTS", "events"),
        ("DEAD_LETTERS", "events.dlq"),
        ("CATALOG", "catalog"),
        ("RECOMMENDATIONS_PREFIX", "recommendations"),
        ("TRAINING_EXAMPLES", "training-examples"),
        ("MODELS", "models"),
    ]:
        monkeypatch.setenv(f"CARTWHEEL_TOPIC_{variable}", f"{prefix}.{stem}")
    monkeypatch.setenv("CARTWHEEL_TOPIC_PARTITIONS", "2")

    assert main(["topics", "create"]) == 0
    first = capsys.readouterr().out
    assert main(["topics", "create"]) == 0
    second = capsys.readouterr().out

    assert first.count("created") == 9
    assert second.count("exists") == 9
    assert f"{prefix}.events " in second


def test_topics_create_keeps_topics_of_another_partition_count(
    infra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = f"t{os.urandom(4).hex()}.events"
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("CARTWHEEL_TOPIC_EVENTS", topic)
    create_topics(KafkaSettings(bootstrap=kafka_bootstrap), [TopicSpec(topic, 2)])
    monkeypatch.setenv("CARTWHEEL_TOPIC_PARTITIONS", "3")

    status = main(["topics", "create"])

    error = capsys.readouterr().err
    assert status == 2
    assert f"topic {topic!r} has 2 partitions, expected 3" in error
    assert "set CARTWHEEL_TOPIC_PARTITIONS to the count they have (2)" in error
    assert error.index("CARTWHEEL_TOPIC_PARTITIONS") < error.index("delete")


def test_interrupted_start_leaves_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def interrupt(server: LocalServer, process: subprocess.Popen[bytes]) -> None:
        started.append(process)
        raise KeyboardInterrupt

    monkeypatch.setattr(processes, "_wait_until_listening", interrupt)

    with pytest.raises(KeyboardInterrupt):
        processes.start_redis(tmp_path, find_free_port())

    assert len(started) == 1
    assert started[0].poll() is not None
    assert list(tmp_path.glob("*.pid")) == []


@pytest.fixture
def frozen_pids() -> Iterator[list[int]]:
    """Pids that the test stopped with SIGSTOP, resumed at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize(("name", "pid_file"), [("kafka", "tansu"), ("redis", "redis")])
def test_infra_status_reports_stopped_process_as_not_responding(
    infra_env: Path,
    frozen_pids: list[int],
    capsys: pytest.CaptureFixture[str],
    name: str,
    pid_file: str,
) -> None:
    assert main(["infra", "up"]) == 0
    pid = _pids(infra_env)[pid_file]
    os.kill(pid, signal.SIGSTOP)
    frozen_pids.append(pid)
    capsys.readouterr()

    status = main(["infra", "status", "--timeout", "0.5"])

    lines = capsys.readouterr().out.splitlines()
    frozen = [line for line in lines if line.startswith(name)]
    others = [line for line in lines if not line.startswith(name)]
    assert status == 1
    assert len(frozen) == 1
    assert frozen[0].endswith(f"not responding (pid {pid})")
    assert len(others) == 1
    assert " running (pid " in others[0]


def test_infra_status_reports_silent_external_redis(
    infra_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = processes.start_redis(infra_env / "external", find_free_port())
    pid = server.pid()
    assert pid is not None
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", f"redis://{server.address}/0")
    os.kill(pid, signal.SIGSTOP)

    try:
        status = main(["infra", "status", "--timeout", "0.5"])
    finally:
        os.kill(pid, signal.SIGCONT)
        server.stop()

    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    assert lines[0].endswith(" external")
    assert lines[1].endswith(" not responding")


@pytest.fixture
def other_redis(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A redis-server that no pid file names, as (pid, port); stopped at teardown."""
    port = find_free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        processes._wait_until_listening(
            LocalServer.redis(tmp_path / "other", port), process
        )
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_infra_down_spares_same_program_on_other_port(
    infra_env: Path,
    other_redis: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid, _ = other_redis
    recorded = f"127.0.0.1:{os.environ['CARTWHEEL_INFRA_REDIS_PORT']}"
    (infra_env / "redis.pid").write_text(f"{pid} {recorded}\n")

    status = main(["infra", "status", "--timeout", "0.5"])
    redis_line = capsys.readouterr().out.splitlines()[1]
    main(["infra", "down"])

    assert status == 1
    assert redis_line.endswith(f"stale pid file (pid {pid})")
    assert recorded in redis_line
    assert _is_alive(pid)
    assert not (infra_env / "redis.pid").exists()


def test_local_server_recognises_its_own_redis(
    tmp_path: Path, other_redis: tuple[int, int]
) -> None:
    pid, port = other_redis
    own = LocalServer.redis(tmp_path, port)
    own.pid_file.write_text(f"{pid} 127.0.0.1:{port}\n")
    elsewhere = LocalServer.redis(tmp_path / "elsewhere", port + 1)
    elsewhere.pid_file.parent.mkdir()
    elsewhere.pid_file.write_text(f"{pid}\n")

    assert own.pid() == pid
    assert elsewhere.pid() is None
    assert elsewhere.has_stale_pid_file()
