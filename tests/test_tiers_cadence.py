"""When each tier fires: fast logs on log_steps, full evals on eval_steps and on the last step."""

from __future__ import annotations

import pytest

from twotier.engine.cadence import TierSettings
from twotier.engine.errors import ConfigError
from twotier.store import Kind


def schedule(settings: TierSettings, max_steps: int) -> list[tuple[int, Kind]]:
    return [(step, kind) for step in range(1, max_steps + 1) if (kind := settings.tier_at(step, max_steps))]


def test_issue_reference_schedule_is_six_fast_logs_and_two_full_evals():
    assert schedule(TierSettings(log_steps=5, eval_steps=20), 40) == [
        (5, Kind.FAST),
        (10, Kind.FAST),
        (15, Kind.FAST),
        (20, Kind.FULL),
        (25, Kind.FAST),
        (30, Kind.FAST),
        (35, Kind.FAST),
        (40, Kind.FULL),
    ]


def test_a_step_due_for_both_tiers_gets_only_the_full_eval():
    assert TierSettings(log_steps=10, eval_steps=20).tier_at(20, 100) is Kind.FULL


def test_last_step_always_gets_a_full_eval():
    assert TierSettings(log_steps=10, eval_steps=200).tier_at(37, 37) is Kind.FULL


def test_eval_steps_zero_turns_full_evals_off_even_at_the_end():
    assert {kind for _, kind in schedule(TierSettings(log_steps=5, eval_steps=0), 40)} == {Kind.FAST}


def test_log_steps_zero_turns_fast_logs_off():
    assert schedule(TierSettings(log_steps=0, eval_steps=20), 40) == [(20, Kind.FULL), (40, Kind.FULL)]


def test_bad_cadence_fails_when_the_callback_is_configured():
    with pytest.raises(ConfigError, match="'log_steps' must be a whole number"):
        TierSettings(log_steps=-5)
