from __future__ import annotations

import logging

import pytest

from services.common.logging import SecretMaskingFilter


def test_secret_masking_filter_hides_secret_in_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("cartwheel.test.masking")
    masking = SecretMaskingFilter(["hunter2"])
    logger.addFilter(masking)

    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("connecting url=%s", "redis://:hunter2@cache:6379/0")
    logger.removeFilter(masking)

    assert "hunter2" not in caplog.text
    assert "redis://:**********@cache:6379/0" in caplog.text


def test_secret_masking_filter_keeps_record_without_secret() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "n=%s", (3,), None)

    SecretMaskingFilter(["hunter2"]).filter(record)

    assert record.getMessage() == "n=3"
    assert record.args == (3,)
