"""The bench report: ``bench.json`` with every number, ``bench.md`` for people."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["ReportFiles", "summary_lines", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """Paths of one written report."""

    markdown: Path
    json: Path


def write_report(result: Mapping[str, Any], folder: Path, command: str) -> ReportFiles:
    """Write ``bench.md`` and ``bench.json`` into ``folder`` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "command": command,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        **result,
    }
    files = ReportFiles(folder / "bench.md", folder / "bench.json")
    files.json.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n")
    files.markdown.write_text("\n".join(_markdown(document)) + "\n")
    return files


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """Return the few lines printed at the end of a run."""
    measured = result["measured"]
    latency = measured["event_to_slate_ms"]
    memory = result["memory"]
    lines = [
        f"events: {measured['events_sent']:,} sent, {measured['slates']:,} products "
        f"slates in {measured['seconds']:.0f} s (stopped by {measured['stopped_by']})",
        f"sustained: {measured['events_per_second']:,.0f} events/s",
        f"event-to-slate ms: p50 {_ms(latency['p50'])}, p95 {_ms(latency['p95'])}, "
        f"p99 {_ms(latency['p99'])}",
        f"Redis growth per active user: "
        f"{memory['growth_bytes_per_active_user']:,.0f} bytes "
        f"({memory['active_users']:,} users)",
        f"broker pass-through: "
        f"{result['pass_through']['messages_per_second']:,.0f} messages/s",
    ]
    invalid = measured["invalid_messages"]
    if invalid:
        lines.append(
            f"invalid: {invalid:,} messages on the products topic were not valid "
            "slates and were skipped; check what the hot path publishes"
        )
    return lines


def _machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f}"


def _markdown(document: Mapping[str, Any]) -> list[str]:
    run, shop, measured = document["run"], document["shop"], document["measured"]
    memory, passing = document["memory"], document["pass_through"]
    latency, in_process = measured["event_to_slate_ms"], measured["in_process_ms"]
    stages = measured["stage_ms_per_event"]
    rate = f"{run['rate']:,.0f} events/s" if run["rate"] else "as fast as it goes"
    lines = [
        "# cartwheel bench",
        "",
        f"Command: `{document['command']}`",
        "",
        f"Finished {document['finished_at']} on {document['machine']['platform']}, "
        f"{document['machine']['cpus']} CPUs, Python {document['machine']['python']}, "
        "load average "
        + " / ".join(f"{value:.1f}" for value in document["machine"]["load_average"])
        + ".",
        "",
        f"The load is synthetic, fitted on {', '.join(run['calibrate_on'])} "
        f"(profile below): {shop['users']:,} users, {shop['items']:,} items, "
        f"{shop['categories']:,} categories, {shop['brands']:,} brands. "
        f"{_warmup_sentence(run['warmup_events'])} "
        f"Offered rate: {rate}, at most {run['max_backlog']:,} events waiting. "
        f"Hot-path processes: {run['instances']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| events sent / products slates | {measured['events_sent']:,} / "
        f"{measured['slates']:,} |",
        f"| stopped by | {measured['stopped_by']} after {measured['seconds']:.0f} s |",
        f"| duplicate / unknown slates | {measured['duplicate_slates']} / "
        f"{measured['unknown_slates']} |",
        f"| messages skipped as not valid slates | {measured['invalid_messages']} |",
        f"| sustained throughput, events/s | {measured['events_per_second']:,.0f} |",
        f"| event-to-slate latency, ms p50 / p95 / p99 | {_ms(latency['p50'])} / "
        f"{_ms(latency['p95'])} / {_ms(latency['p99'])} |",
        f"| in-process latency (slate's own), ms p50 / p95 / p99 | "
        f"{_ms(in_process['p50'])} / {_ms(in_process['p95'])} / "
        f"{_ms(in_process['p99'])} |",
        f"| candidates scored per event (mean) | "
        f"{measured['candidates_per_event']:.1f} |",
        *(
            f"| {stage} stage, ms per event | {stages[stage]:.2f} |"
            for stage in ("features", "learning", "scoring")
            if stage in stages
        ),
        f"| Redis growth per active user, bytes | "
        f"{memory['growth_bytes_per_active_user']:,.0f} "
        f"({memory['active_users']:,} users) |",
        f"| user hash and outbox per user, bytes (sample of "
        f"{memory['user_keys_sampled']}) | {memory['user_key_bytes_mean']:,.0f} |",
        f"| broker pass-through (consume + produce), messages/s | "
        f"{passing['messages_per_second']:,.0f} ({passing['messages']:,} of "
        f"{passing['bytes']} bytes) |",
        f"| model versions | {', '.join(measured['model_versions']) or 'none'} |",
        "",
        "## Profile",
        "",
        *_profile_lines(document["profile"]),
    ]
    return lines


def _profile_lines(profile: Mapping[str, Any]) -> list[str]:
    lengths = profile["session_length_weights"]
    gaps = profile["gap_quantiles_seconds"]
    mean_length = sum(i * w for i, w in enumerate(lengths, start=1))
    return [
        "| measure | value |",
        "|---|---|",
        f"| sample | {profile['sample_events']:,} events, "
        f"{profile['sample_users']:,} users, {profile['sample_items']:,} items, "
        f"{profile['sample_sessions']:,} sessions over "
        f"{profile['span_seconds'] / 3600:.1f} h |",
        f"| user activity exponent (observed, corrected) | "
        f"{profile['user_exponent_observed']:.3f}, {profile['user_exponent']:.3f} |",
        f"| item popularity exponent (observed, corrected) | "
        f"{profile['item_exponent_observed']:.3f}, {profile['item_exponent']:.3f} |",
        f"| items per category / per brand exponent | "
        f"{profile['category_exponent']:.3f} / {profile['brand_exponent']:.3f} |",
        f"| session length, mean events | {mean_length:.2f} |",
        f"| gap between a session's events, s p50 / p90 | {gaps[50]:.0f} / "
        f"{gaps[90]:.0f} |",
        f"| cart adds per click | {profile['cart_per_click']:.4f} |",
        f"| cart adds followed by a purchase | {profile['purchase_after_cart']:.3f} |",
        f"| purchases without a cart add, per click | "
        f"{profile['direct_purchase_per_click']:.4f} |",
        f"| clicks repeating an item of the session | {profile['repeat_click']:.3f} |",
        f"| new clicks in the previous item's category | "
        f"{profile['same_category']:.3f} |",
        "",
        "The full profile is in `bench.json` under `profile`.",
    ]


def _warmup_sentence(events: int) -> str:
    if events:
        return f"{events:,} warm-up events trained the ranker first."
    return "No warm-up ran, so the heuristic ranker ranked every slate."
