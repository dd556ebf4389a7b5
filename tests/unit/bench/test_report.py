from __future__ import annotations

from typing import Any

from services.bench.report import _warmup_sentence, summary_lines


def test_warmup_sentence_names_the_warmup_events() -> None:
    assert _warmup_sentence(5_000) == ("5,000 warm-up events trained the ranker first.")


def test_warmup_sentence_without_warmup_names_the_heuristic() -> None:
    assert "heuristic ranker" in _warmup_sentence(0)


def _result(invalid_messages: int) -> dict[str, Any]:
    latency = {"p50": 1.0, "p95": 2.0, "p99": 3.0}
    return {
        "measured": {
            "events_sent": 10,
            "slates": 10,
            "seconds": 5.0,
            "stopped_by": "completion",
            "events_per_second": 2.0,
            "event_to_slate_ms": latency,
            "invalid_messages": invalid_messages,
        },
        "memory": {"growth_bytes_per_active_user": 100.0, "active_users": 4},
        "pass_through": {"messages_per_second": 1000.0},
    }


def test_summary_names_invalid_messages() -> None:
    lines = summary_lines(_result(invalid_messages=2))

    assert lines[-1].startswith("invalid: 2 messages on the products topic")


def test_summary_without_invalid_messages_omits_line() -> None:
    lines = summary_lines(_result(invalid_messages=0))

    assert not any(line.startswith("invalid:") for line in lines)
