"""The bench's table shows each figure as the median of its repetitions with their min and max."""

from __future__ import annotations

from bench.stats import Row, Sample, Table, judged, ratios


def test_a_sample_reports_median_min_and_max_of_its_values() -> None:
    sample = Sample.of([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (sample.median, sample.low, sample.high) == (3.0, 1.0, 10.0)


def test_ratios_pair_the_values_of_the_same_repetition() -> None:
    assert ratios([2.0, 9.0, 4.0], [1.0, 3.0, 4.0]).values == (2.0, 3.0, 1.0)


def test_a_goal_is_judged_on_the_median_not_on_the_best_repetition() -> None:
    row = judged(Row("1", "overhead", Sample.of([0.9, 1.05, 1.06]), "x", "<= 1.02"), lambda ratio: ratio <= 1.02)
    assert row.met is False


def test_the_table_prints_median_min_max_and_count_of_known_numbers() -> None:
    table = Table()
    table.add([Row("5", "submit p99", Sample.of([0.013, 0.011, 0.5]), "ms", "< 0.1", True)])
    assert table.lines()[2].split() == ["5", "submit", "p99", "0.013", "0.011", "0.500", "3", "ms", "<", "0.1", "yes"]


def test_a_skipped_measurement_keeps_its_row_and_says_why() -> None:
    table = Table()
    table.add([Row("6", "wandb: log one event", None, "ms", note="skipped: not installed")])
    lines = table.lines()
    assert "skipped" in lines[2] and lines[-1] == "[6] wandb: log one event: skipped: not installed"
