from __future__ import annotations

from services.bench.report import _warmup_sentence


def test_warmup_sentence_names_the_warmup_events() -> None:
    assert _warmup_sentence(5_000) == ("5,000 warm-up events trained the ranker first.")


def test_warmup_sentence_without_warmup_names_the_heuristic() -> None:
    assert "heuristic ranker" in _warmup_sentence(0)
