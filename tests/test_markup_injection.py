"""Text from datasets and models is data: markup, escape sequences and control characters show as text."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from support import fast, full, write_run
from twotier.tui.app import make_app
from twotier.tui.app.widgets.eval_detail import EvalDetail
from twotier.tui.app.widgets.eval_table import EvalTable
from twotier.tui.app.widgets.example_pane import ExamplePane
from twotier.tui.app.widgets.run_header import RunHeader

pytestmark = pytest.mark.anyio

MARKUP = "[bold red]x[/]"
TITLE = "\x1b]0;title\x07"
CLEAR = "\x1b[2J"
HOSTILE_PROMPT = f"reverse {MARKUP} {TITLE} {CLEAR} [link=https://example.com]click[/link]"
HOSTILE_GOLDEN = f"{MARKUP}{CLEAR}\x00\x9b"


@pytest.fixture
def hostile_ledger(tmp_path: Path) -> Path:
    events = [
        fast(5, HOSTILE_PROMPT, HOSTILE_GOLDEN),
        full(10, f"{TITLE}[/]{MARKUP}", False, HOSTILE_PROMPT, HOSTILE_GOLDEN),
    ]
    return write_run(tmp_path / "ledger.db", events, name=f"[blink]run[/]{CLEAR}", max_steps=10)


def screen_text(app) -> str:
    """What the terminal shows, from the app's own screenshot: the text with its escapes undone."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


async def shown(app, pilot) -> None:
    while not app.caught_up:
        await pilot.pause(0.05)
    await pilot.pause()


async def test_example_pane_shows_markup_and_escapes_as_visible_text(hostile_ledger):
    app = make_app(attach=hostile_ledger)
    async with app.run_test(size=(120, 60)) as pilot:
        await shown(app, pilot)
        text = "\n".join(strip.text for strip in app.query_one(ExamplePane).lines)
        screen = screen_text(app)
    assert "reverse [bold red]x[/] ␛]0;title\\x07 ␛[2J [link=https://example.com]click[/link]" in text
    assert "[bold red]x[/]␛[2J␀\\x9b" in text
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\x1b" not in screen and "[bold red]x[/]" in screen


async def test_header_shows_a_hostile_run_name_as_text(hostile_ledger):
    app = make_app(attach=hostile_ledger)
    async with app.run_test(size=(120, 40)) as pilot:
        await shown(app, pilot)
        header = app.query_one(RunHeader).render_text().plain
    assert "[blink]run[/]␛[2J" in header


async def test_eval_detail_shows_prompt_golden_and_output_as_text(hostile_ledger):
    app = make_app(attach=hostile_ledger)
    async with app.run_test(size=(120, 60)) as pilot:
        await shown(app, pilot)
        app.query_one(EvalTable).focus()
        await pilot.press("enter")
        assert isinstance(app.screen, EvalDetail)
        while "loading" in str(app.screen.query_one("#detail").render()):
            await pilot.pause(0.05)
        await pilot.pause()
        detail = app.screen.query_one("#detail").render()
        plain = str(detail)
        screen = screen_text(app)
    assert "reverse [bold red]x[/] ␛]0;title\\x07 ␛[2J [link=https://example.com]click[/link]" in plain
    assert "␛]0;title\\x07[/][bold red]x[/]" in plain
    assert "\x1b" not in plain and "\x07" not in plain
    assert "\x1b" not in screen and "click[/link]" in screen
