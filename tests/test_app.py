"""The app attached to ledgers of real short runs, driven from the keyboard with Textual's Pilot."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from support import copy_ledger, event, new_run
from twotier.store import LedgerError, LedgerReader, LedgerWriter, RunInfo, RunStatus
from twotier.tui.app import TwoTierApp, make_app
from twotier.tui.app.widgets.confirm import Confirm
from twotier.tui.app.widgets.eval_detail import EvalDetail
from twotier.tui.app.widgets.eval_table import EvalTable
from twotier.tui.app.widgets.example_pane import ExamplePane
from twotier.tui.app.widgets.probe_history import ProbeHistory
from twotier.tui.app.widgets.run_header import RunHeader
from twotier.tui.app.widgets.run_picker import RunPicker

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


async def caught_up(pilot: Pilot, polls: int = 1200) -> None:
    """Wait (boundedly) until the app has shown everything the ledger held."""
    for _ in range(polls):
        if pilot.app.caught_up:
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError("the app never caught up with the ledger")


def pane_text(app: TwoTierApp) -> str:
    return "\n".join(strip.text for strip in app.query_one(ExamplePane).lines)


def table_steps(app: TwoTierApp) -> list[int]:
    table = app.query_one(EvalTable)
    return [table.get_row_at(i)[0].value for i in range(table.row_count)]


async def test_header_shows_the_run_its_status_and_progress(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        header = app.query_one(RunHeader).render_text().plain
    assert "✔ finished" in header
    assert "model demo" in header
    assert "step 40/40" in header and "100%" in header


async def test_example_pane_ends_with_the_newest_event(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        text = pane_text(app)
    assert text.rindex("FULL EVAL - Step 40") > text.rindex("FAST LOG - Step 35") > text.rindex("FAST LOG - Step 30")


async def test_a_burst_draws_its_newest_events_as_blocks_and_the_rest_a_line_each(short_run):
    app = make_app(attach=short_run.ledger)  # the whole run arrives in one read: a burst of 8 events
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        text = pane_text(app)
    assert "FAST LOG - Step 25" not in text and "FULL EVAL - Step 20" not in text
    assert text.index("📍 5 ") < text.index("🔍 20 ") < text.index("📍 25 ") < text.index("FAST LOG - Step 30")


async def test_a_read_that_ends_exactly_at_a_chunk_boundary_still_catches_up(short_run):
    app = make_app(attach=short_run.ledger)
    app.read_chunk = len(short_run.events)  # the first read is full, the second finds nothing more
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        assert "FULL EVAL - Step 40" in pane_text(app)


async def test_eval_table_lists_every_full_eval_newest_last_with_the_cursor_on_it(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        assert table_steps(app) == [20, 40]
        assert app.query_one(EvalTable).cursor_row == 1


async def test_s_sorts_the_table_by_the_next_column(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        app.query_one(EvalTable).focus()
        await pilot.press("s")
        table = app.query_one(EvalTable)
        train_losses = [table.get_row_at(i)[1].value for i in range(table.row_count)]
        assert table.sort_column == "train"
    assert train_losses == sorted(train_losses)


async def test_o_flips_the_table_to_newest_first(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        app.query_one(EvalTable).focus()
        await pilot.press("o")
        assert table_steps(app) == [40, 20]


async def test_enter_on_a_row_shows_that_eval_with_its_probe_set(short_run):
    with LedgerReader(short_run.ledger) as reader:
        step_20 = next(e for e in reader.events_after(short_run.run_id, with_probes=True) if e.step == 20)
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        app.query_one(EvalTable).focus()
        await pilot.press("up", "enter")  # the cursor starts on the newest row, step 40
        assert isinstance(app.screen, EvalDetail)
        while "loading" in str(app.screen.query_one("#detail").render()):
            await pilot.pause(0.05)
        detail = str(app.screen.query_one("#detail").render())
    assert "FULL EVAL - Step 20" in detail
    assert step_20.prompt in detail and step_20.golden in detail
    matched = sum(p.match for p in step_20.probes)
    assert f"PROBE SET: {matched}/{len(step_20.probes)} MATCH" in detail
    assert "(first eval: nothing to compare)" in detail


async def test_probe_set_marks_flips_since_the_previous_eval(short_run):
    with LedgerReader(short_run.ledger) as reader:
        fulls = [e for e in reader.events_after(short_run.run_id, with_probes=True) if e.is_full]
    flips = sum(a.match != b.match for a, b in zip(fulls[0].probes, fulls[1].probes))
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        app.query_one(EvalTable).focus()
        await pilot.press("enter")  # the newest, step 40, compared with step 20
        while "loading" in str(app.screen.query_one("#detail").render()):
            await pilot.pause(0.05)
        detail = str(app.screen.query_one("#detail").render())
        probes = app.screen.query_one("#probes")
        lines = [str(probes.get_option_at_index(i).prompt) for i in range(probes.option_count)]
    assert "flipped since step 20" in detail
    assert len(lines) == len(fulls[1].probes)
    assert sum(line.startswith(("↑", "↓")) for line in lines) == flips


async def test_enter_on_a_probe_shows_its_answer_at_every_full_eval(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        app.query_one(EvalTable).focus()
        await pilot.press("enter")
        while not app.screen.query_one("#probes").option_count:
            await pilot.pause(0.05)
        await pilot.press("down", "enter")  # the second probe
        assert isinstance(app.screen, ProbeHistory)
        while "loading" in str(app.screen.query_one("#history").render()):
            await pilot.pause(0.05)
        history = str(app.screen.query_one("#history").render())
    assert "step     20" in history and "step     40" in history
    assert history.index("step     20") < history.index("step     40")


async def test_escape_closes_the_eval_detail(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        app.query_one(EvalTable).focus()
        await pilot.press("enter", "escape")
        assert not isinstance(app.screen, EvalDetail)


async def test_f_turns_following_off_and_says_so(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        pane = app.query_one(ExamplePane)
        assert pane.following and "· following new events" in pane.border_title
        await pilot.press("f")
        assert not pane.following and "NOT following" in pane.border_title
        await pilot.press("f")
        assert pane.following


async def test_scrolling_up_stops_following_and_end_resumes_it(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        pane = app.query_one(ExamplePane)
        pane.focus()
        await pilot.press("pageup")
        assert not pane.following
        await pilot.press("end")
        assert pane.following


async def test_pause_and_stop_keys_are_hidden_for_a_run_that_ended(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        assert app.check_action("pause", ()) is False and app.check_action("stop", ()) is False
        await pilot.press("x")
        assert not isinstance(app.screen, Confirm)


async def test_q_quits_an_attached_app_at_once_with_status_0(short_run):
    app = make_app(attach=short_run.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        await pilot.press("q")
        assert not app.is_running
    assert app.return_code == 0


async def test_attach_shows_the_latest_run_by_default(two_runs):
    app = make_app(attach=two_runs.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        assert app.run_id == two_runs.slow.run_id


async def test_attach_with_run_shows_that_run(two_runs):
    first = two_runs.fast
    app = make_app(attach=two_runs.ledger, run_ref=first.run_id)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        assert app.run_id == first.run_id
        assert "demo-" in app.query_one(RunHeader).render_text().plain


async def test_attach_without_a_run_moves_to_a_newer_run_when_it_starts_and_says_so(short_run, tmp_path):
    ledger = copy_ledger(short_run.ledger, tmp_path / "ledger.db")
    app = make_app(attach=ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        assert app.run_id == short_run.run_id
        writer = LedgerWriter(new_run(ledger, "newer0000001"), "newer0000001", flush_interval=0.01)
        writer.submit(event("newer0000001", 1))
        writer.close(RunStatus.RUNNING)
        for _ in range(600):
            if app.run_id == "newer0000001":
                break
            await pilot.pause(0.05)
        assert app.run_id == "newer0000001"
        assert "newer0000001" in app.query_one(RunHeader).render_text().plain
        assert "a newer run started: now showing newer0000001" in [note.message for note in app._notifications]


class HeaderAlone(App[None]):
    def compose(self) -> ComposeResult:
        yield RunHeader()


async def test_header_pace_of_a_resumed_run_counts_only_its_new_process():
    app = HeaderAlone()
    async with app.run_test():
        header = app.query_one(RunHeader)
        header.add_events(replace(event("r", step), elapsed_s=float(step)) for step in range(5, 35, 5))  # 1 step/s
        resumed = [replace(event("r", step), elapsed_s=(step - 20) / 2) for step in (25, 30, 35)]  # from 20, 2 steps/s
        header.add_events(resumed[:1])
        assert header.steps_per_s is None  # one event of the new process: no pace yet
        header.add_events(resumed[1:])
        assert header.steps_per_s == pytest.approx(2.0)


async def test_header_of_a_run_paused_between_fast_logs_shows_the_step_it_paused_at():
    app = HeaderAlone()
    async with app.run_test():
        header = app.query_one(RunHeader)
        header.add_events([event("r", 50)])
        paused = RunInfo(id="r", name="r", status=RunStatus.PAUSED, model="demo", dataset="demo", config={},
                         started_at=0.0, heartbeat_at=0.0, max_steps=2000, last_step=56)  # fmt: skip
        header.set_run(paused, "paused")
        assert "step 56/2000" in header.render_text().plain


def test_attach_to_an_unknown_run_fails_before_the_app_opens(two_runs):
    with pytest.raises(LedgerError, match="no run matches 'nope'"):
        make_app(attach=two_runs.ledger, run_ref="nope")


async def test_run_picker_lists_every_run_and_switches_to_the_chosen_one(two_runs):
    first, second = two_runs.fast, two_runs.slow
    app = make_app(attach=two_runs.ledger)
    async with app.run_test(size=SIZE) as pilot:
        await caught_up(pilot)
        await pilot.press("r")
        picker = app.screen
        assert isinstance(picker, RunPicker)
        table = picker.query_one("DataTable")
        while table.row_count < 2:
            await pilot.pause(0.05)
        assert [str(key.value) for key in table.rows] == [second.run_id, first.run_id]
        await pilot.press("down", "enter")
        await caught_up(pilot)
        assert app.run_id == first.run_id
        assert "demo-" in app.query_one(RunHeader).render_text().plain
        assert table_steps(app) == [20, 40]


def test_attach_mode_never_imports_torch(short_run, tmp_path: Path):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from twotier.tui.cli import build_parser
        from twotier.tui.app import make_app

        async def main():
            app = make_app(attach=Path({str(short_run.ledger)!r}))
            async with app.run_test(size=(80, 24)) as pilot:
                while not app.caught_up:
                    await pilot.pause(0.05)
                await pilot.press("r")
                await pilot.pause(0.5)
                await pilot.press("escape", "q")
            assert app.run_id == {short_run.run_id!r}

        asyncio.run(main())
        print("torch" in sys.modules, "transformers" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
