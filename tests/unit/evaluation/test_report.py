from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.events import Event
from schemas.recommendations import Slate
from services.evaluation.metrics import RankingScores
from services.evaluation.prequential import evaluate_streams
from services.evaluation.report import (
    _narrow_leads,
    summary_lines,
    verdict_sentence,
    write_report,
)
from services.evaluation.results import SYSTEM_NAME, EvaluationResult
from services.evaluation.settings import EvaluationSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def result(
    make_event: Callable[..., Event],
    make_slate: Callable[..., Slate],
    settings: EvaluationSettings,
) -> EvaluationResult:
    events = [
        make_event(f"e{i}", f"u{i % 3}", f"i{i % 5}", i, session_id=f"s{i % 3}")
        for i in range(30)
    ]
    slates = [
        make_slate(e, [f"i{(i + 1) % 5}"], latency_ms=i) for i, e in enumerate(events)
    ]
    return evaluate_streams(events, slates, settings=settings)


def test_write_report_creates_every_file(
    result: EvaluationResult, tmp_path: Path
) -> None:
    files = write_report(result, tmp_path / "report")

    assert files.markdown.is_file()
    assert files.metrics_json.is_file()
    assert [p.name for p in files.plots] == [
        "hr_over_time.png",
        "latency.png",
        "surfaces.png",
        "ranking.png",
    ]


def test_report_plots_are_png_images(result: EvaluationResult, tmp_path: Path) -> None:
    files = write_report(result, tmp_path)

    for plot in files.plots:
        data = plot.read_bytes()
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        assert data[:8] == PNG_SIGNATURE, plot.name
        assert (width, height) == (800, 450), plot.name
        assert len(data) > 5_000, plot.name


def test_metrics_json_holds_every_recommender_and_cutoff(
    result: EvaluationResult, tmp_path: Path
) -> None:
    files = write_report(result, tmp_path)

    metrics = json.loads(files.metrics_json.read_text())

    assert set(metrics["ranking"]) == set(result.recommenders)
    assert set(metrics["ranking"]["cartwheel"]) == {"1", "2", "3"}
    assert metrics["inputs"]["events"] == 30
    assert metrics["latency"]["products"]["count"] == 30


def test_report_files_are_identical_for_same_result(
    result: EvaluationResult, tmp_path: Path
) -> None:
    first = write_report(result, tmp_path / "first")
    second = write_report(result, tmp_path / "second")

    for path in [first.markdown, first.metrics_json, *first.plots]:
        assert path.read_bytes() == (second.directory / path.name).read_bytes(), path


def test_report_markdown_states_verdict_and_links_plots(
    result: EvaluationResult, tmp_path: Path
) -> None:
    text = write_report(result, tmp_path).markdown.read_text()

    assert verdict_sentence(result) in text
    assert "![HR over time](hr_over_time.png)" in text
    assert "| cartwheel |" in text


def test_verdict_sentence_names_winning_baselines(result: EvaluationResult) -> None:
    sentence = verdict_sentence(result)

    # The hand-made slates list one item that never is the next one.
    assert sentence.startswith("Cartwheel does not beat every baseline")
    assert "most_popular" in sentence


def test_verdict_sentence_gives_baseline_values(
    result: EvaluationResult,
) -> None:
    k = result.cutoffs[-1]
    popular = result.ranking["most_popular"][k].hit_rate
    system = result.ranking["cartwheel"][k].hit_rate

    sentence = verdict_sentence(result)

    assert f"on HR@{k}, " in sentence
    assert f"most_popular ({popular:.4f})" in sentence
    assert f"Cartwheel's {system:.4f}" in sentence


def test_summary_lines_list_every_recommender(result: EvaluationResult) -> None:
    lines = summary_lines(result)

    assert lines[0].split() == ["recommender", "HR@3", "MRR@3"]
    assert [line.split()[0] for line in lines[1:6]] == list(result.recommenders)
    assert lines[-1] == verdict_sentence(result)


def test_verdict_sentence_without_scored_events(
    make_event: Callable[..., Event],
    make_slate: Callable[..., Slate],
    settings: EvaluationSettings,
) -> None:
    only = make_event("e1", "u1", "a", 0)
    result = evaluate_streams([only], [make_slate(only, ["b"])], settings=settings)

    assert result.verdict.beats_every_baseline is False
    assert verdict_sentence(result).startswith("No next event could be scored")


def test_verdict_sentence_without_slates(
    make_event: Callable[..., Event], settings: EvaluationSettings
) -> None:
    events = [make_event("e1", "u1", "a", 0), make_event("e2", "u1", "b", 1)]
    result = evaluate_streams(events, [], settings=settings)

    sentence = verdict_sentence(result)

    assert sentence.startswith("No products slate was read")
    assert "does not beat" not in sentence


def test_verdict_sentence_when_nothing_finds_next_item(
    make_event: Callable[..., Event],
    make_slate: Callable[..., Slate],
    settings: EvaluationSettings,
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    result = evaluate_streams(
        [e1, e2], [make_slate(e1, ["z"]), make_slate(e2, [])], settings=settings
    )

    sentence = verdict_sentence(result)

    assert sentence.startswith(
        "Neither Cartwheel nor any baseline found a next item in its top 3 on "
        "this replay (1 scored event)"
    )
    assert "does not beat" not in sentence


def test_verdict_sentence_reports_lookahead_events(
    make_event: Callable[..., Event],
    make_slate: Callable[..., Slate],
    settings: EvaluationSettings,
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    late = make_slate(e1, ["b"], generated_at=e2.event_time + timedelta(minutes=1))
    result = evaluate_streams([e1, e2], [late, make_slate(e2, [])], settings=settings)

    sentence = verdict_sentence(result)

    assert sentence.startswith("Cartwheel beats every baseline")
    assert "1 of 1 scored events (100%) were read by Cartwheel before" in sentence
    assert "none of those slates used its target" in sentence
    assert "other users' events read in the same wave (L-55)" in sentence
    assert sentence.endswith(
        "No next event could be scored on the other events (every user has a "
        "single event, or none falls after score_from), so Cartwheel is not "
        "compared with the baselines."
    )


def test_verdict_sentence_counts_unseen_events(
    make_event: Callable[..., Event],
    make_slate: Callable[..., Slate],
    settings: EvaluationSettings,
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    e3 = make_event("e3", "u1", "c", 2)
    late = make_slate(e1, ["b"], generated_at=e2.event_time + timedelta(minutes=1))
    slates = [late, make_slate(e2, ["c"]), make_slate(e3, [])]
    result = evaluate_streams([e1, e2, e3], slates, settings=settings)

    sentence = verdict_sentence(result)

    assert "1 of 2 scored events (50%) were read by Cartwheel before" in sentence
    assert sentence.endswith(
        "Cartwheel beats every baseline on HR@3 and MRR@3 on the other 1 event."
    )


def _scores(hit_rate: float, mrr: float) -> dict[int, RankingScores]:
    return {20: RankingScores(6229, hit_rate, mrr, None)}


def test_narrow_lead_is_called_within_noise() -> None:
    ranking = {
        SYSTEM_NAME: _scores(0.1694, 0.0639),
        "co-visitation": _scores(0.1446, 0.0627),
        "popular": _scores(0.0417, 0.0100),
    }

    sentence = _narrow_leads(ranking, 20, 6229)

    assert sentence == (
        "The lead on MRR@20 over co-visitation (0.0639 against 0.0627, one "
        "standard error about 0.0032) is smaller than one standard error, so "
        "it is within noise."
    )


def test_clear_lead_gets_no_noise_sentence() -> None:
    ranking = {SYSTEM_NAME: _scores(0.1694, 0.0639), "popular": _scores(0.04, 0.01)}

    assert _narrow_leads(ranking, 20, 6229) == ""


def test_report_counts_malformed_records_skipped_per_topic(
    result: EvaluationResult, tmp_path: Path
) -> None:
    inputs = dataclasses.replace(result.inputs, skipped_records={"slates": 11})
    skipped = dataclasses.replace(result, inputs=inputs)

    files = write_report(skipped, tmp_path)

    assert "| malformed records skipped: slates | 11 |" in files.markdown.read_text()
    metrics = json.loads(files.metrics_json.read_text())
    assert metrics["inputs"]["skipped_records"] == {"slates": 11}


def test_report_counts_no_malformed_records_when_none_skipped(
    result: EvaluationResult, tmp_path: Path
) -> None:
    text = write_report(result, tmp_path).markdown.read_text()

    assert "| malformed records skipped | 0 |" in text
