"""The comparison's tables: means over seeds and seed-paired differences."""

from __future__ import annotations

import math

import pytest

from services.trainer.compare import markdown_table, paired_differences, paired_table


def _results() -> dict[str, dict[str, list[float]]]:
    return {
        "multi_task": {
            "auc_click": [0.75, 0.5, 0.625],
            "auc_cart_add": [0.80, 0.82, 0.81],
            "auc_purchase": [math.nan, 0.9, 0.9],
            "mrr": [0.5, 0.5, 0.5],
        },
        "single_task_click": {"auc_click": [0.625] * 3, "mrr": [0.5] * 3},
        "single_task_cart_add": {"auc_cart_add": [0.70, 0.72, 0.71]},
        "single_task_purchase": {"auc_purchase": [math.nan, 0.8, 0.8]},
    }


def test_paired_differences_skip_nan_tasks() -> None:
    differences = paired_differences(_results())

    assert set(differences) == {"click", "cart_add"}
    assert differences["click"] == [0.125, -0.125, 0.0]
    assert differences["cart_add"] == pytest.approx([0.10, 0.10, 0.10])


def test_paired_table_counts_seeds_not_worse() -> None:
    lines = paired_table(_results()).splitlines()

    assert lines[0] == "| task | multi - single AUC | min | max | seeds not worse |"
    assert lines[2] == "| click | +0.0000 ± 0.1021 | -0.1250 | +0.1250 | 2/3 |"
    assert lines[3].endswith("| 3/3 |")
    assert len(lines) == 4


def test_markdown_table_marks_nan_metrics() -> None:
    lines = markdown_table(_results()).splitlines()

    assert lines[2].split(" | ")[3] == "n/a"
    assert lines[5] == "| single_task_purchase | - | - | n/a | - |"
