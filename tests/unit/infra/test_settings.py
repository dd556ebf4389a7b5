from __future__ import annotations

import pytest

from services.common.errors import InvalidSettingsError
from services.common.settings import load_settings
from services.infra import find_free_port
from services.infra.settings import InfraSettings


@pytest.fixture(autouse=True)
def local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CARTWHEEL_KAFKA_BOOTSTRAP",
        "CARTWHEEL_REDIS_URL",
        "CARTWHEEL_INFRA_KAFKA_PORT",
        "CARTWHEEL_INFRA_REDIS_PORT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_equal_ports_are_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = find_free_port()
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(port))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(port))

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(InfraSettings)

    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_INFRA_REDIS_PORT='{port}': expected a TCP "
        f"port from 1024 to 65535 other than {port}, which "
        "CARTWHEEL_INFRA_KAFKA_PORT sets, because the local broker and "
        "redis-server cannot listen on one port"
    )


def test_equal_ports_blame_the_set_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", "16379")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(InfraSettings)

    assert str(caught.value).startswith(
        "invalid setting CARTWHEEL_INFRA_KAFKA_PORT='16379': expected a TCP port "
        "from 1024 to 65535 other than 16379, which the default of "
        "CARTWHEEL_INFRA_REDIS_PORT sets"
    )


def test_equal_ports_pass_with_external_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = find_free_port()
    monkeypatch.setenv("CARTWHEEL_INFRA_KAFKA_PORT", str(port))
    monkeypatch.setenv("CARTWHEEL_INFRA_REDIS_PORT", str(port))
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "broker.example:9092")

    settings = load_settings(InfraSettings)

    assert settings.is_kafka_external
    assert settings.redis_port == port
