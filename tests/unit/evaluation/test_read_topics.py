"""Reading the topics for an evaluation, without a broker."""

from __future__ import annotations

import pytest

from services.common.errors import BrokerUnreachableError
from services.common.settings import KafkaSettings
from services.evaluation.consumer import read_topics
from services.evaluation.prequential import PrequentialEvaluator
from services.evaluation.settings import EvaluationSettings
from services.infra import find_free_port


def test_read_topics_names_bootstrap_without_broker() -> None:
    address = f"127.0.0.1:{find_free_port()}"
    settings = EvaluationSettings(kafka=KafkaSettings(bootstrap=address))

    with pytest.raises(BrokerUnreachableError) as raised:
        read_topics(PrequentialEvaluator(settings), settings)

    assert address in str(raised.value)
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in str(raised.value)
