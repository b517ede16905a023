"""The main screen as a user sees it at 80x24 and 120x40, on a ledger with fixed events and times."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import START, fast, fixed_events, write_run
from twotier.tui.app import TwoTierApp, make_app
from twotier.tui.app.widgets.eval_table import EvalTable
from twotier.tui.app.widgets.example_pane import ExamplePane


@pytest.fixture
def fixed_app(tmp_path: Path) -> TwoTierApp:
    """A live run at step 60 of 100, seen at a fixed moment 150 s after it started."""
    ledger = write_run(tmp_path / "ledger.db", fixed_events())
    return make_app(attach=ledger, clock=lambda: START + 150.0)


async def wait_caught_up(pilot) -> None:
    while not pilot.app.caught_up:
        await pilot.pause(0.05)
    await pilot.pause()


def test_main_screen_at_80x24(snap_compare, fixed_app):
    assert snap_compare(fixed_app, terminal_size=(80, 24), run_before=wait_caught_up)


def test_main_screen_at_120x40(snap_compare, fixed_app):
    assert snap_compare(fixed_app, terminal_size=(120, 40), run_before=wait_caught_up)


@pytest.mark.anyio
async def test_at_80x24_every_event_shows_its_prompt_golden_and_loss_in_a_line_or_two(fixed_app):
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await wait_caught_up(pilot)
        pane = fixed_app.query_one(ExamplePane)
        text = "\n".join(strip.text for strip in pane.lines)
    assert pane.compact
    assert "📍 55  reverse word055 → 550drow  loss 0.2697" in text


@pytest.mark.anyio
async def test_before_the_first_full_eval_the_small_screen_gives_the_table_s_room_to_the_examples(tmp_path):
    app = make_app(attach=write_run(tmp_path / "ledger.db", [fast(5), fast(10)]), clock=lambda: START + 150.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_caught_up(pilot)
        pane = app.query_one(ExamplePane)
        assert not app.query_one(EvalTable).display and not pane.compact
        assert "📝 PROMPT:" in "\n".join(strip.text for strip in pane.lines)
