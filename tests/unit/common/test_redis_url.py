from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidSettingsError
from services.common.redis_url import redis_url_problem
from services.common.settings import (
    RedisSettings,
    load_settings,
    masked_settings,
    secret_values,
)

HOST = "redis://127.0.0.1:26679"


@pytest.mark.parametrize("path", ["/ 1", "/1 ", "/%201", "/1/", "//1", "/+1"])
def test_redis_url_problem_rejects_padded_path(path: str) -> None:
    problem = redis_url_problem(f"{HOST}{path}")

    assert problem is not None
    assert "is not a database number such as /0" in problem


@pytest.mark.parametrize(
    "number", ["2147483648", "99999999999999999999", "00" + "9" * 5000]
)
def test_redis_url_problem_rejects_database_beyond_select(number: str) -> None:
    problem = redis_url_problem(f"{HOST}/{number}")

    assert problem == (
        f"the database number in the path /{number} is above 2147483647, the "
        "largest that Redis's SELECT accepts; a server has databases 0 to 15 "
        "unless its 'databases' setting is changed"
    )


@pytest.mark.parametrize("path", ["/2147483647", "/000000000000000000015"])
def test_redis_url_problem_accepts_database_within_select(path: str) -> None:
    assert redis_url_problem(f"{HOST}{path}") is None


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (
            "health_check_interval=-5",
            "health_check_interval='-5' must be a whole number of seconds",
        ),
        (
            "socket_connect_timeout=0",
            "socket_connect_timeout='0' must be a number of seconds above 0",
        ),
        ("socket_timeout=-1", "socket_timeout='-1' must be a number of seconds"),
        ("socket_timeout=nan", "socket_timeout='nan' must be a number of seconds"),
        ("socket_timeout=1e12", "socket_timeout='1e12' must be a number of seconds"),
        ("socket_read_size=0", "socket_read_size='0' must be a number of bytes"),
        ("max_connections=0", "max_connections='0' must be a whole number"),
        ("db=+1", "db='+1' must be a database number in plain digits"),
        (
            "db=2147483648",
            "db='2147483648' must be a database number in plain digits from 0 to "
            "2147483647",
        ),
        ("socket_keepalive=flase", "socket_keepalive='flase' must be true or false"),
        ("retry_on_error=Nope", "retry_on_error='Nope' must be a comma-separated"),
        ("client_name=two%20words", "client_name='two%20words' must be printable"),
        ("protocol=4", "protocol='4' must be 2 or 3"),
    ],
)
def test_redis_url_problem_names_option_value_and_form(
    query: str, problem: str
) -> None:
    found = redis_url_problem(f"{HOST}/0?{query}")

    assert found is not None
    assert found.startswith(f"the query option {problem}")


@pytest.mark.parametrize(
    "query",
    [
        "socket_timeout=2.5&socket_connect_timeout=.5",
        "health_check_interval=0&max_connections=50",
        "retry_on_timeout=true&socket_keepalive=OFF",
        "retry_on_error=ConnectionError,TimeoutError",
        "client_name=cartwheel-hotpath&protocol=3",
        "db=0",
    ],
)
def test_redis_url_problem_accepts_usable_options(query: str) -> None:
    assert redis_url_problem(f"{HOST}/0?{query}") is None


def test_redis_url_problem_lists_accepted_options() -> None:
    problem = redis_url_problem(f"{HOST}/0?socket_timout=1")

    assert problem is not None
    assert "the query option 'socket_timout' is not one that redis-py's" in problem
    assert "socket_timeout" in problem
    assert "ssl_certfile" not in problem


def test_redis_url_problem_rejects_timeout_of_blocking_pool() -> None:
    problem = redis_url_problem(f"{HOST}/0?timeout=5")

    assert problem is not None
    assert "use socket_timeout" in problem


def test_redis_url_problem_rejects_tls_option_without_tls() -> None:
    problem = redis_url_problem(f"{HOST}/0?ssl_cert_reqs=none")

    assert problem == "the query option ssl_cert_reqs is used only with a rediss:// URL"


def test_redis_url_problem_checks_tls_files(tmp_path: Path) -> None:
    certificate = tmp_path / "client.pem"
    certificate.write_text("certificate\n")
    url = f"rediss://127.0.0.1:26679/0?ssl_certfile={certificate}"

    missing = redis_url_problem(f"{url}.missing")

    assert redis_url_problem(url) is None
    assert missing is not None
    assert "must be a path to a readable certificate file" in missing


def test_redis_url_problem_rejects_option_given_twice() -> None:
    problem = redis_url_problem(f"{HOST}/0?db=1&db=2")

    assert problem == "the query option db is given twice; give it once"


def test_redis_url_problem_rejects_option_without_value() -> None:
    problem = redis_url_problem(f"{HOST}/0?socket_timeout")

    assert problem is not None
    assert "socket_timeout has no value" in problem


def test_redis_url_problem_rejects_two_databases() -> None:
    problem = redis_url_problem(f"{HOST}/0?db=3")

    assert problem is not None
    assert "the path /0 and the query option db=3 name different databases" in problem


def test_redis_url_problem_hides_invalid_password_option() -> None:
    problem = redis_url_problem(f"{HOST}/0?password=%20")

    assert problem == "the query option password must be a password"


def test_load_settings_rejects_negative_health_check_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"{HOST}/0?health_check_interval=-5"
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", url)

    with pytest.raises(InvalidSettingsError) as raised:
        load_settings(RedisSettings)

    assert str(raised.value).startswith(
        f"invalid setting CARTWHEEL_REDIS_URL={url!r}: the query option "
        "health_check_interval='-5' must be a whole number of seconds"
    )


def test_masked_settings_hides_tls_key_password_option() -> None:
    url = "rediss://cache:6380/0?ssl_password=hunter2&protocol=3"
    settings = RedisSettings(url=url)

    masked = masked_settings(settings)

    assert masked["url"] == "rediss://cache:6380/0?ssl_password=**********&protocol=3"
    assert secret_values(settings) == ["hunter2"]
