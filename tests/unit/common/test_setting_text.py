from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from services.api.settings import ApiSettings
from services.common.errors import InvalidSettingsError
from services.common.setting_text import listen_host_problem
from services.common.settings import load_settings
from services.features.settings import CatalogSettings
from services.feedback.settings import FeedbackSettings
from services.hotpath.settings import HotPathSettings
from services.replay.settings import Settings as ReplaySettings
from services.trainer.settings import TrainerSettings

HOST_SETTINGS = [
    (ApiSettings, "CARTWHEEL_API_HOST"),
    (CatalogSettings, "CARTWHEEL_FEATURES_METRICS_HOST"),
    (FeedbackSettings, "CARTWHEEL_FEEDBACK_METRICS_HOST"),
    (HotPathSettings, "CARTWHEEL_HOTPATH_METRICS_HOST"),
    (TrainerSettings, "CARTWHEEL_TRAINER_METRICS_HOST"),
]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "0.0.0.0",
        "::",
        "::1",
        "localhost",
        "metrics-1.shop.example",
        "localhost.",
        "shop.example.",
        "cafe",
        "a" * 63,
        ".".join(["b" * 63] * 3 + ["c" * 61]),
        ".".join(["b" * 63] * 3 + ["c" * 61]) + ".",
    ],
)
def test_listen_host_problem_accepts_address_or_name(host: str) -> None:
    assert listen_host_problem(host) is None


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("", "the host is empty"),
        ("{}", "the character '{' is not allowed in a host name"),
        ("[]", "the character '[' is not allowed in a host name"),
        ("'x'", 'the character "\'" is not allowed in a host name'),
        ("a\u200bb", "the character '\\u200b' is not allowed in a host name"),
        ("shop_host", "the character '_' is not allowed in a host name"),
        (" localhost", "the character ' ' is not allowed in a host name"),
        ("a" * 5000, "the host name has 5000 characters, more than 253"),
        ("a" * 64, f"the label {'a' * 20!r}... has 64 characters, more than 63"),
        ("a..b", "the host name has an empty label"),
        ("localhost..", "the host name has an empty label"),
        (".localhost", "the host name has an empty label"),
        (".", "the host name has an empty label"),
        ("-shop", "the label '-shop' starts or ends with '-'"),
        ("256.1", "the last label is all digits"),
        ("shop.example.10.", "the last label is all digits"),
        ("[::1]", "write the IPv6 address without brackets, as ::1"),
    ],
)
def test_listen_host_problem_names_the_flaw(host: str, problem: str) -> None:
    found = listen_host_problem(host)

    assert found is not None
    assert found.startswith(problem)


def test_listen_host_problem_suggests_every_interface_for_zero() -> None:
    problem = listen_host_problem("0")

    assert problem is not None
    assert "listens on every interface" in problem
    assert "write 0.0.0.0 if every interface is meant" in problem


@pytest.mark.parametrize("host", ["0x0", "00", "0.0", "0.0.0", "0x0.0", "0."])
def test_listen_host_problem_rejects_zero_forms(host: str) -> None:
    assert listen_host_problem(host) == (
        f"{host} is read as 0.0.0.0, which listens on every interface; write "
        "0.0.0.0 if every interface is meant, or 127.0.0.1 for this machine"
    )


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("127.0.0.01", "127.0.0.1"),
        ("0XA.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
    ],
)
def test_listen_host_problem_asks_for_plain_ipv4(host: str, address: str) -> None:
    assert listen_host_problem(host) == (
        f"{host} is read as the IPv4 address {address}; write the address "
        f"plainly, as {address}"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{}", "the character '{' is not allowed in a host name"),
        ("0", "0 is read as 0.0.0.0, which listens on every interface"),
        ("0x0", "0x0 is read as 0.0.0.0, which listens on every interface"),
        ("0x7f000001", "0x7f000001 is read as the IPv4 address 127.0.0.1"),
    ],
)
@pytest.mark.parametrize(("settings_class", "variable"), HOST_SETTINGS)
def test_every_listen_host_setting_names_the_flaw(
    monkeypatch: pytest.MonkeyPatch,
    settings_class: type[BaseSettings],
    variable: str,
    value: str,
    problem: str,
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(InvalidSettingsError) as raised:
        load_settings(settings_class)

    message = str(raised.value)
    assert message.startswith(f"invalid setting {variable}={value!r}: {problem}")
    assert "expected an IP address or host name (RFC 1123" in message


@pytest.mark.parametrize(("settings_class", "variable"), HOST_SETTINGS)
def test_every_listen_host_setting_accepts_trailing_dot(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[BaseSettings], variable: str
) -> None:
    monkeypatch.setenv(variable, "localhost.")

    settings = load_settings(settings_class)

    assert "localhost." in settings.model_dump_json()


@pytest.mark.parametrize("name", ["", " ", "\t"])
def test_replay_service_name_rejects_blank(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_REPLAY_SERVICE_NAME", name)

    with pytest.raises(InvalidSettingsError) as raised:
        load_settings(ReplaySettings)

    assert str(raised.value) == (
        f"invalid setting CARTWHEEL_REPLAY_SERVICE_NAME={name!r}: the name is "
        "blank; expected 1 to 64 characters, not all blank"
    )
