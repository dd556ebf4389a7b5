from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.__main__ import main
from services.cli.command import build_parser
from services.common.settings import load_settings
from services.infra import find_free_port, find_free_ports
from services.infra.cli import _exports
from services.infra.manager import InfraManager
from services.infra.settings import InfraSettings


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["infra"],
        ["infra", "up"],
        ["infra", "down"],
        ["infra", "status"],
        ["topics"],
        ["topics", "create"],
    ],
    ids=lambda argv: " ".join(argv) or "cartwheel",
)
def test_cli_prints_help_on_every_level(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*argv, "--help"])

    assert caught.value.code == 0
    assert "usage: cartwheel" in capsys.readouterr().out


def test_cli_exits_2_without_traceback_on_invalid_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "eighty")

    status = main(["infra", "status"])

    error = capsys.readouterr().err
    assert status == 2
    assert "CARTWHEEL_INFRA_KAFKA_PORT='eighty'" in error
    assert "Traceback" not in error


def test_cli_exits_2_when_broker_is_missing(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{find_free_port()}"
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", address)
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path))

    status = main(["topics", "create"])

    assert status == 2
    assert address in capsys.readouterr().err


def test_up_exits_2_when_external_bootstrap_has_no_broker(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{find_free_port()}"
    monkeypatch.delenv("CARTWHEEL_REDIS_URL", raising=False)
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", address)
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))

    status = main(["infra", "up"])

    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith(
        f"cartwheel: error: CARTWHEEL_KAFKA_BOOTSTRAP='{address}' points at an "
        "address where no Kafka broker listens;"
    )
    assert "start one with 'cartwheel infra up'" not in error


def test_up_rejects_unwritable_state_dir(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("")
    state_dir = tmp_path / "a-file" / "state"
    monkeypatch.delenv("CARTWHEEL_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CARTWHEEL_REDIS_URL", raising=False)
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(state_dir))
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(find_free_port()))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))

    status = main(["infra", "up"])

    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith(
        "cartwheel: error: invalid setting "
        f"CARTWHEEL_INFRA_STATE_DIR={str(state_dir)!r}: "
    )
    assert error.endswith("; expected a directory this process can create and write\n")
    assert len(error.splitlines()) == 1


@pytest.mark.parametrize("command", ["status", "down"])
@pytest.mark.parametrize("path", ["a-file", "a-file/state"])
def test_status_and_down_reject_file_as_state_dir(
    infra_ports: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
    path: str,
) -> None:
    (tmp_path / "a-file").write_text("")
    state_dir = tmp_path / path
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(state_dir))
    at_fault = "it" if path == "a-file" else f"{str(tmp_path / 'a-file')!r}, above it,"

    status = main(["infra", command])

    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith(
        "cartwheel: error: invalid setting "
        f"CARTWHEEL_INFRA_STATE_DIR={str(state_dir)!r}: {at_fault} is a file, not "
        "a directory; expected a directory this process can read"
    )
    assert len(error.splitlines()) == 1


def test_up_says_state_dir_links_to_missing_target(
    infra_ports: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    state_dir.symlink_to(tmp_path / "gone")
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(state_dir))

    status = main(["infra", "up"])

    error = capsys.readouterr().err
    assert status == 2
    assert error == (
        "cartwheel: error: invalid setting "
        f"CARTWHEEL_INFRA_STATE_DIR={str(state_dir)!r}: it is a symbolic link to a "
        f"missing target, {str(tmp_path / 'gone')!r}; expected a directory this "
        "process can create and write\n"
    )


@pytest.mark.parametrize(("command", "expected_status"), [("status", 1), ("down", 0)])
def test_status_and_down_accept_missing_state_dir(
    infra_ports: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
    expected_status: int,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path / "missing"))

    status = main(["infra", command])

    output = capsys.readouterr()
    assert status == expected_status
    assert output.err == ""
    assert output.out.count(" stopped") == 2
    assert not (tmp_path / "missing").exists()


def test_up_rejects_equal_ports_before_starting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    port = find_free_port()
    monkeypatch.delenv("CARTWHEEL_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CARTWHEEL_REDIS_URL", raising=False)
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(port))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(port))

    status = main(["infra", "up"])

    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith(
        f"cartwheel: error: invalid setting CARTWHEEL_INFRA_REDIS_PORT='{port}': "
    )
    assert f"other than {port}, which CARTWHEEL_INFRA_KAFKA_PORT sets" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("timeout", ["0", "-1", "61", "nan", "soon"])
def test_infra_status_rejects_invalid_timeout_as_usage_error(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["infra", "status", "--timeout", timeout])

    error = capsys.readouterr().err
    assert caught.value.code == 2
    assert error.startswith("usage: cartwheel infra status")
    assert (
        f"argument --timeout: expected a number above 0 and at most 60, got {timeout!r}"
    ) in error


def test_down_exits_0_when_ports_are_closed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("CARTWHEEL_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CARTWHEEL_REDIS_URL", raising=False)
    monkeypatch.setenv("CARTWHEEL_INFRA_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(find_free_port()))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(find_free_port()))
    (tmp_path / "redis.pid").write_text("abc\n")

    status = main(["infra", "down"])

    assert status == 0
    assert capsys.readouterr().err == ""


@pytest.fixture
def infra_ports(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Set only the infra port variables, each to a port where nothing listens."""
    monkeypatch.delenv("CARTWHEEL_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CARTWHEEL_REDIS_URL", raising=False)
    kafka_port, redis_port = find_free_ports(2)
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(kafka_port))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(redis_port))
    return kafka_port, redis_port


def test_replay_uses_infra_kafka_port(
    infra_ports: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")

    status = main(["replay", "--file", str(events)])

    assert status == 2
    assert f"no Kafka broker listens at 127.0.0.1:{infra_ports[0]};" in (
        capsys.readouterr().err
    )


def test_feedback_report_uses_infra_redis_port(
    infra_ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["feedback", "report"])

    assert status == 2
    assert f"127.0.0.1:{infra_ports[1]}" in capsys.readouterr().err


def test_exports_name_default_state_dir_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (
        "CARTWHEEL_INFRA_STATE_DIR",
        "CARTWHEEL_KAFKA_BOOTSTRAP",
        "CARTWHEEL_REDIS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(InfraSettings)

    exports = dict(_exports(InfraManager(settings), settings))

    assert exports["CARTWHEEL_INFRA_STATE_DIR"] == str(tmp_path / ".cartwheel")
