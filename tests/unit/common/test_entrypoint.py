from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException

from services.common.entrypoint import parse_service_arguments, run_entry_point
from services.common.errors import (
    BrokerUnreachableError,
    InvalidSettingsError,
    TopicMissingError,
)
from services.infra import LocalServer, find_free_port
from tests.entry_points import environment_without_settings, run_module

# Each entry point, the program name its error line starts with, and one
# invalid setting of its own. services.demo runs ``cartwheel demo``.
INVALID_SETTINGS = [
    ("services.features", "services.features", "CARTWHEEL_FEATURES_METRICS_PORT"),
    ("services.hotpath", "services.hotpath", "CARTWHEEL_HOTPATH_METRICS_PORT"),
    ("services.trainer", "services.trainer", "CARTWHEEL_TRAINER_METRICS_PORT"),
    ("services.feedback", "services.feedback", "CARTWHEEL_FEEDBACK_METRICS_PORT"),
    ("services.api", "services.api", "CARTWHEEL_API_PORT"),
    ("services.replay", "services.replay", "CARTWHEEL_REPLAY_LINGER_MS"),
    ("services.demo", "cartwheel", "CARTWHEEL_DEMO_WARMUP_FRACTION"),
]


def _isolated_environment(tmp_path: Path) -> dict[str, str]:
    """Return this process's environment without Cartwheel settings.

    The broker and Redis addresses point at free loopback ports and the
    folders at ``tmp_path``. A process that passed its settings check by
    mistake therefore fails to connect instead of reaching a real server.
    """
    environment = environment_without_settings()
    environment.update(
        {
            "CARTWHEEL_KAFKA_BOOTSTRAP": f"127.0.0.1:{find_free_port()}",
            "CARTWHEEL_REDIS_URL": f"redis://127.0.0.1:{find_free_port()}/0",
            "CARTWHEEL_DEMO_STATE_DIR": str(tmp_path / "demo"),
            "CARTWHEEL_DEMO_REPORT_DIR": str(tmp_path / "report"),
            "CARTWHEEL_TRAINER_REGISTRY_DIR": str(tmp_path / "registry"),
            "CARTWHEEL_FEEDBACK_DATA_DIR": str(tmp_path / "feedback"),
            "CARTWHEEL_LEARNER_CHECKPOINT_DIR": str(tmp_path / "learner"),
        }
    )
    return environment


@pytest.mark.parametrize(
    ("module", "program", "variable"),
    INVALID_SETTINGS,
    ids=[module for module, _, _ in INVALID_SETTINGS],
)
def test_entry_point_invalid_setting_exits_2(
    module: str, program: str, variable: str, tmp_path: Path
) -> None:
    environment = _isolated_environment(tmp_path)
    environment[variable] = "eighty"

    result = run_module(module, environment)

    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{program}: error: invalid setting ")
    assert f"{variable}='eighty'" in lines[0]
    assert "expected" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "variable",
    [
        "CARTWHEEL_LEARNER_MAX_RESOLUTIONS_PER_EVENT",
        "CARTWHEEL_SCORER_CANDIDATES__MAX_CANDIDATES",
    ],
)
def test_hotpath_stage_setting_checked_before_broker(
    variable: str, tmp_path: Path
) -> None:
    # The stage factories read these; nothing listens at the broker address,
    # so a check after the broker's would report the broker instead.
    environment = _isolated_environment(tmp_path)
    environment[variable] = "eighty"

    result = run_module("services.hotpath", environment)

    last_line = result.stderr.splitlines()[-1]
    assert result.returncode == 2, result.stderr
    assert last_line.startswith("services.hotpath: error: invalid setting ")
    assert f"{variable}='eighty'" in last_line
    assert "expected" in last_line
    assert "Kafka broker" not in result.stderr
    assert "Traceback" not in result.stderr


# A bad block, a misplaced or misspelled name or an integer not written as
# plain digits, of a stage setting, and the text of its error line.
BLOCK_AND_NAME_ERRORS = [
    (
        "CARTWHEEL_SCORER_WEIGHTS",
        '{"ranker_blnd": 0.5}',
        'the key "ranker_blnd" names no setting of this block',
    ),
    (
        "CARTWHEEL_SCORER_WEIGHTS",
        '{"ranker_blend": 5}',
        'key "ranker_blend": Input should be less than or equal to 1',
    ),
    ("CARTWHEEL_SCORER_WEIGHTS", "3", "this variable sets a whole block of settings"),
    (
        "CARTWHEEL_SCORER_TRENDING_WEIGHT",
        "0.5",
        "set CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT instead",
    ),
    (
        "CARTWHEEL_SCORER_WEIGHTS__RANKER_BLND",
        "0.5",
        "did you mean CARTWHEEL_SCORER_WEIGHTS__RANKER_BLEND?",
    ),
    (
        "CARTWHEEL_SCORER_CANDIDATES__MAX_CANDIDATES",
        "50.0",
        "the value is not a plain base-10 integer",
    ),
]


@pytest.mark.parametrize(("variable", "value", "problem"), BLOCK_AND_NAME_ERRORS)
def test_hotpath_setting_error_one_line(
    variable: str, value: str, problem: str, tmp_path: Path
) -> None:
    environment = _isolated_environment(tmp_path)
    environment[variable] = value

    result = run_module("services.hotpath", environment)

    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"services.hotpath: error: invalid setting {variable}={value!r}"
    )
    assert problem in lines[0]


# Variables that ``cartwheel demo`` reads itself, then one of each child
# service, which the demo checks before it starts its servers.
DEMO_VARIABLES = [
    "CARTWHEEL_KAFKA_SECURITY_PROTOCOL",
    "CARTWHEEL_REDIS_KEY_PREFIX",
    "CARTWHEEL_TOPIC_PARTITIONS",
    "CARTWHEEL_EVALUATION_SESSION_GAP_SECONDS",
    "CARTWHEEL_FEATURES_BATCH_SIZE",
    "CARTWHEEL_HOTPATH_BATCH_SIZE",
    "CARTWHEEL_LEARNER_MAX_RESOLUTIONS_PER_EVENT",
    "CARTWHEEL_SCORER_CANDIDATES__MAX_CANDIDATES",
    "CARTWHEEL_TRAINER_LOCK_TTL_SECONDS",
    "CARTWHEEL_FEEDBACK_BATCH_SIZE",
    "CARTWHEEL_API_INGEST_TIMEOUT_SECONDS",
]


@pytest.mark.parametrize("variable", DEMO_VARIABLES)
def test_demo_rejects_setting_before_servers(variable: str, tmp_path: Path) -> None:
    environment = _isolated_environment(tmp_path)
    environment[variable] = "has space"

    result = run_module("services.demo", environment, "--limit", "10")

    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cartwheel: error: invalid setting ")
    assert f"{variable}='has space'" in lines[0]
    assert "expected" in lines[0]
    assert not (tmp_path / "demo" / "tansu.pid").exists()


def test_demo_leaves_variables_it_sets_to_itself(tmp_path: Path) -> None:
    # The demo gives its children their ports, so these values never reach
    # a child; the run fails later, on the missing dataset path.
    environment = _isolated_environment(tmp_path)
    environment["CARTWHEEL_API_PORT"] = "has space"
    environment["CARTWHEEL_TRAINER_EPOCHS"] = "has space"

    result = run_module(
        "services.demo", environment, "--path", str(tmp_path / "missing.csv")
    )

    assert result.returncode == 1, result.stderr
    assert "dataset path" in result.stderr
    assert "CARTWHEEL_API_PORT" not in result.stderr
    assert "CARTWHEEL_TRAINER_EPOCHS" not in result.stderr


def test_infra_up_rejects_kafka_setting(
    tmp_path: Path,
) -> None:
    environment = environment_without_settings()
    kafka_port, redis_port = find_free_port(), find_free_port()
    environment.update(
        {
            "CARTWHEEL_INFRA_STATE_DIR": str(tmp_path),
            "CARTWHEEL_INFRA_KAFKA_PORT": str(kafka_port),
            "CARTWHEEL_INFRA_REDIS_PORT": str(redis_port),
            "CARTWHEEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CARTWHEEL_KAFKA_SASL_MECHANISM": "PLAIN",
            "CARTWHEEL_KAFKA_SASL_USERNAME": "shop",
        }
    )

    try:
        result = run_module("services.cli", environment, "infra", "up")
    finally:
        # Stop any server that a start-up without the check left running.
        LocalServer.tansu(tmp_path, kafka_port).stop()
        LocalServer.redis(tmp_path, redis_port).stop()

    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert lines == [
        "cartwheel: error: invalid setting CARTWHEEL_KAFKA_SASL_PASSWORD "
        "(not set): expected a non-empty password when "
        "CARTWHEEL_KAFKA_SECURITY_PROTOCOL is SASL_SSL"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "variable",
    ["CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "CARTWHEEL_HOTPATH_GC_THRESHOLD"],
)
def test_bench_rejects_setting_before_servers(variable: str, tmp_path: Path) -> None:
    environment = _isolated_environment(tmp_path)
    environment[variable] = "eighty"

    result = run_module(
        "services.cli",
        environment,
        "bench",
        "--events",
        "10",
        "--warmup-events",
        "0",
        "--report",
        str(tmp_path / "bench"),
    )

    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("cartwheel: error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("cartwheel: error: invalid setting ")
    assert f"{variable}='eighty'" in errors[0]
    assert lines[-1] == errors[0]
    assert "broker on" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "error",
    [
        InvalidSettingsError("invalid setting CARTWHEEL_X='y'; expected z"),
        BrokerUnreachableError("no Kafka broker responded at 127.0.0.1:1"),
        TopicMissingError("topic 'events' is missing"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_run_entry_point_reports_error_line(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    def main() -> None:
        raise error

    status = run_entry_point("services.example", main)

    assert status == 2
    assert capsys.readouterr().err == f"services.example: error: {error}\n"


def test_run_entry_point_reports_kafka_exception(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = KafkaException(KafkaError(KafkaError._TRANSPORT, "connection refused"))

    def main() -> None:
        raise error

    status = run_entry_point("services.example", main)

    assert status == 2
    assert capsys.readouterr().err == (
        f"services.example: error: the Kafka cluster failed: {error}\n"
    )


def test_run_entry_point_reports_redis_connection_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def main() -> None:
        raise redis.exceptions.ConnectionError(
            "Error 111 connecting to 127.0.0.1:1. Connection refused."
        )

    status = run_entry_point("services.example", main)

    assert status == 2
    assert capsys.readouterr().err == (
        "services.example: error: Redis failed: Error 111 connecting to "
        "127.0.0.1:1. Connection refused; check CARTWHEEL_REDIS_URL, and that "
        "its server runs ('cartwheel infra status' for the local one)\n"
    )


def test_run_entry_point_returns_0_when_main_returns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = run_entry_point("services.example", lambda: None)

    assert status == 0
    assert capsys.readouterr().err == ""


def test_run_entry_point_propagates_other_errors() -> None:
    def main() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_entry_point("services.example", main)


SERVICES = [
    "services.client.example",
    "services.api",
    "services.features",
    "services.feedback",
    "services.hotpath",
    "services.trainer",
]


@pytest.mark.parametrize("module", SERVICES)
def test_service_help_starts_nothing(module: str, tmp_path: Path) -> None:
    # The settings point at closed ports, so a service that started anyway
    # would fail with an error instead of printing the usage.
    result = run_module(module, _isolated_environment(tmp_path), "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m {module} [-h]")
    assert "CARTWHEEL_" in result.stdout
    assert result.stderr == ""


def test_service_arguments_describe_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    docstring = "Run x: ``python -m services.x``.\n\nMore detail."

    with pytest.raises(SystemExit) as raised:
        parse_service_arguments("services.x", docstring, ["--help"])

    output = capsys.readouterr().out
    assert raised.value.code == 0
    assert "Run x: python -m services.x." in output
    assert "More detail" not in output


def test_service_arguments_reject_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_service_arguments("services.x", None, ["--port", "1"])

    assert raised.value.code == 2
    assert "unrecognized arguments: --port 1" in capsys.readouterr().err


def test_cli_log_level_replaces_service_level(tmp_path: Path) -> None:
    # Nothing listens at the broker address, so the command stops with an
    # error after its start-up lines, which are INFO by the service's default.
    environment = _isolated_environment(tmp_path)

    quiet = run_module(
        "services.cli", environment, "--log-level", "ERROR", "catalog", "run"
    )
    default = run_module("services.cli", environment, "catalog", "run")

    assert quiet.returncode == 2, quiet.stderr
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr
    assert quiet.stderr.startswith("cartwheel: error: ")
    assert " INFO " in default.stderr


def test_demo_rejects_unloadable_stage_before_servers(tmp_path: Path) -> None:
    environment = _isolated_environment(tmp_path)
    environment["CARTWHEEL_HOTPATH_STAGES"] = '["nowhere.module:build"]'

    result = run_module("services.demo", environment, "--limit", "10")

    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "CARTWHEEL_HOTPATH_STAGES" in lines[0]
    assert "'nowhere.module:build' cannot be loaded" in lines[0]
    assert not (tmp_path / "demo" / "tansu.pid").exists()


def test_honour_interrupts_restores_an_ignored_sigint() -> None:
    # A non-interactive shell starts a background job with SIGINT ignored.
    program = (
        "import time\n"
        "from services.common.interrupts import honour_interrupts\n"
        "honour_interrupts()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()

    # An uncaught KeyboardInterrupt ends the interpreter by SIGINT.
    assert status == -signal.SIGINT
