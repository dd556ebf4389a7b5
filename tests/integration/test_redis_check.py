"""The start-up check of CARTWHEEL_REDIS_URL against a real redis-server."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from services.common.errors import InfrastructureError, InvalidSettingsError
from services.common.kafka import is_listening
from services.common.redis_check import verify_redis
from services.common.settings import RedisSettings
from services.infra import find_free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def account(redis_url: str, redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    """An ACL user with a password on the test server: (its URL, the password)."""
    user = f"check{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        commands=["+@all"],
    )
    address = urlsplit(redis_url).netloc
    yield f"redis://{user}:{password}@{address}", password
    redis_client.acl_deluser(user)


def test_verify_redis_accepts_working_url(account: tuple[str, str]) -> None:
    url, _ = account

    verify_redis(RedisSettings(url=f"{url}/0"))


def test_verify_redis_rejects_wrong_password(account: tuple[str, str]) -> None:
    url, password = account
    wrong = url.replace(password, "not-the-password")

    with pytest.raises(InvalidSettingsError) as raised:
        verify_redis(RedisSettings(url=f"{wrong}/0"))

    message = str(raised.value)
    assert message.startswith("invalid setting CARTWHEEL_REDIS_URL=")
    assert "refused the credentials" in message
    assert "not-the-password" not in message
    assert "expected a URL with the user and password" in message


def test_verify_redis_rejects_missing_database(account: tuple[str, str]) -> None:
    url, password = account

    with pytest.raises(InvalidSettingsError) as raised:
        verify_redis(RedisSettings(url=f"{url}/99"))

    message = str(raised.value)
    assert "the server has no database with this number" in message
    assert "/99" in message
    assert "expected a number from 0 to 15, since the server has 16 databases" in (
        message
    )
    assert password not in message


def test_largest_database_number_names_server_count(redis_url: str) -> None:
    address = urlsplit(redis_url).netloc

    with pytest.raises(InvalidSettingsError) as raised:
        verify_redis(RedisSettings(url=f"redis://{address}/2147483647"))

    assert str(raised.value).endswith(
        "expected a number from 0 to 15, since the server has 16 databases"
    )


def test_missing_database_without_config_permission(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Managed Redis services often forbid CONFIG, so the count cannot be read.
    user = f"noconfig{uuid.uuid4().hex[:8]}"
    redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all", "-config"],
    )
    address = urlsplit(redis_url).netloc
    try:
        with pytest.raises(InvalidSettingsError) as raised:
            verify_redis(RedisSettings(url=f"redis://{user}:pw@{address}/99"))
    finally:
        redis_client.acl_deluser(user)

    message = str(raised.value)
    assert message.endswith(
        "expected a number below the server's 'databases' setting, which is 16 "
        "unless changed"
    )
    assert "/0" not in message


def test_missing_database_names_server_count(tmp_path: Path) -> None:
    process, address = _start_server(tmp_path, "--databases", "4")
    try:
        with pytest.raises(InvalidSettingsError) as raised:
            verify_redis(RedisSettings(url=f"redis://{address}/4"))
    finally:
        process.terminate()
        process.wait(20)

    assert str(raised.value).endswith(
        "expected a number from 0 to 3, since the server has 4 databases"
    )


def test_verify_redis_goes_on_without_server(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{find_free_port()}/0"

    with caplog.at_level(logging.WARNING, logger="services.common.redis_check"):
        verify_redis(RedisSettings(url=url))

    assert "redis did not respond at start" in caplog.text
    assert "TLS" not in caplog.text


def test_verify_redis_hints_at_tls_for_plain_server(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_url.replace("redis://", "rediss://", 1)

    with caplog.at_level(logging.WARNING, logger="services.common.redis_check"):
        verify_redis(RedisSettings(url=url), timeout_seconds=0.5)

    assert "redis did not respond at start" in caplog.text
    assert "a rediss:// URL needs a server that speaks TLS" in caplog.text


def test_verify_redis_needs_no_ping_permission(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # A least-privilege ACL may leave PING out although the service works.
    user = f"noping{uuid.uuid4().hex[:8]}"
    redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all", "-ping"],
    )
    address = urlsplit(redis_url).netloc
    try:
        verify_redis(RedisSettings(url=f"redis://{user}:pw@{address}/0"))
    finally:
        redis_client.acl_deluser(user)


def test_verify_redis_rejects_user_who_may_not_select(
    redis_url: str, redis_client: redis.Redis
) -> None:
    user = f"noselect{uuid.uuid4().hex[:8]}"
    redis_client.acl_setuser(
        user, enabled=True, passwords=["+pw"], keys=["*"], commands=["-@all"]
    )
    address = urlsplit(redis_url).netloc
    try:
        with pytest.raises(InvalidSettingsError) as raised:
            verify_redis(RedisSettings(url=f"redis://{user}:pw@{address}/1"))
    finally:
        redis_client.acl_deluser(user)

    assert "the user may not select the URL's database" in str(raised.value)


def _start_server(
    directory: Path, *options: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a redis-server of this test with ``options``: the process, its address."""
    executable = shutil.which("redis-server")
    assert executable is not None, "redis-server is not installed"
    port = find_free_port()
    process = subprocess.Popen(
        [
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            *options,
            "--save",
            "",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not is_listening(f"127.0.0.1:{port}", timeout_seconds=0.2):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    return process, f"127.0.0.1:{port}"


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test that requires a password: its address."""
    process, address = _start_server(tmp_path, "--requirepass", "s3cret")
    yield address
    process.terminate()
    process.wait(20)


def test_verify_redis_names_missing_password(password_server: str) -> None:
    with pytest.raises(InvalidSettingsError) as raised:
        verify_redis(RedisSettings(url=f"redis://{password_server}/0"))

    message = str(raised.value)
    assert "the server requires a password and the URL has none" in message
    assert "HELLO" not in message


def test_verify_redis_accepts_server_password(password_server: str) -> None:
    verify_redis(RedisSettings(url=f"redis://:s3cret@{password_server}/0"))


def test_verify_redis_reports_denied_client_command(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # The URL's client_name makes the connection send CLIENT SETNAME, which
    # this user may not run.
    user = f"noclient{uuid.uuid4().hex[:8]}"
    redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all", "-client"],
    )
    address = urlsplit(redis_url).netloc
    try:
        with pytest.raises(InfrastructureError) as raised:
            verify_redis(
                RedisSettings(url=f"redis://{user}:pw@{address}/0?client_name=cw")
            )
    finally:
        redis_client.acl_deluser(user)

    message = str(raised.value)
    assert message.startswith(
        f"Redis failed the start check of CARTWHEEL_REDIS_URL='redis://{user}:"
        "**********@"
    )
    assert "NoPermissionError" in message
    assert "check the URL's query options" in message
    assert "\n" not in message
