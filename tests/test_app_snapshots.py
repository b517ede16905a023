"""The main screen as a user sees it at 80x24 and 120x40, on a ledger with fixed events and times."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import START, fixed_events, write_run
from twotier.tui.app import TwoTierApp, make_app


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
