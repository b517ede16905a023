"""The app training in its own process: pause, stop and quit act on the run; the end sets the exit status."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from support import ENDLESS
from twotier.engine.config import Config, load_config
from twotier.store import LedgerReader, RunStatus
from twotier.tui.app import TwoTierApp, make_app
from twotier.tui.app.widgets.confirm import Confirm
from twotier.tui.app.widgets.run_header import RunHeader

pytestmark = pytest.mark.anyio

SIZE = (100, 30)


def tiny_config(tmp: Path, **overrides: object) -> Config:
    settings = {**ENDLESS, "eval_samples": 8, "probe_size": 4, "max_new_tokens": 8}
    return load_config(
        None, {**settings, "ledger": str(tmp / "ledger.db"), "output_dir": str(tmp / "out"), **overrides}
    )


async def until(pilot: Pilot, condition, step: float = 0.1, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app never reached the expected state"
        await pilot.pause(step)


def header_status(app: TwoTierApp) -> str:
    return app.query_one(RunHeader).status


def has_events(app: TwoTierApp) -> bool:
    return app.query_one(RunHeader).latest is not None


async def test_quitting_while_training_asks_then_stops_the_run_cleanly(tmp_path: Path):
    app = make_app(config=tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: has_events(app))
        await pilot.press("q")
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await until(pilot, lambda: app.engine.ended is not None)
        await pilot.pause()
    assert app.return_code == 0
    with LedgerReader(tmp_path / "ledger.db") as reader:
        run = reader.run("latest")
    assert run.status is RunStatus.STOPPED
    assert list((tmp_path / "out" / run.id).glob("checkpoint-*"))


async def test_answering_no_keeps_the_run_training(tmp_path: Path):
    app = make_app(config=tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: has_events(app))
        await pilot.press("x", "n")
        assert not isinstance(app.screen, Confirm)
        step = app.query_one(RunHeader).latest.step
        await until(pilot, lambda: app.query_one(RunHeader).latest.step > step)
        assert app.engine.ended is None
        app.engine.stop()
        await until(pilot, lambda: app.engine.ended is not None)


async def test_p_pauses_the_run_and_p_again_resumes_it(tmp_path: Path):
    app = make_app(config=tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: has_events(app))
        await pilot.press("p")
        await until(pilot, lambda: header_status(app) == "paused")
        await pilot.press("p")
        await until(pilot, lambda: header_status(app) == "running")
        await pilot.press("x", "y")
        await until(pilot, lambda: header_status(app) == "stopped")


async def test_a_failed_run_shows_its_error_and_sets_the_exit_status(tmp_path: Path):
    app = make_app(config=tiny_config(tmp_path, dataset=str(tmp_path / "missing.jsonl")))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine.ended is not None)
        await pilot.pause()
        header = app.query_one(RunHeader).render_text().plain
        assert app.engine.ended.status is RunStatus.FAILED
        assert "training failed" in header and "missing.jsonl" in header
        await pilot.press("q")
    assert app.return_code == app.engine.ended.exit_code != 0


async def test_the_app_resumes_a_stopped_run_in_place_and_trains_it_to_the_end(tmp_path: Path):
    from twotier.engine.resume import find_resume_point

    first = make_app(config=tiny_config(tmp_path))
    async with first.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: has_events(first))
        await pilot.press("x", "y")
        await until(pilot, lambda: first.engine.ended is not None)
    with LedgerReader(tmp_path / "ledger.db") as reader:
        stopped_at = reader.run("latest").last_step
    point = find_resume_point(tmp_path / "ledger.db", "latest", {"max_steps": stopped_at + 30})
    app = make_app(config=point.config, resume=point)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine.ended is not None)
        await until(pilot, lambda: header_status(app) == "finished")
    assert app.engine.ended.status is RunStatus.FINISHED
    with LedgerReader(tmp_path / "ledger.db") as reader:
        run = reader.run("latest")
        steps = [e.step for e in reader.iter_events(run.id)]
    assert run.id == point.run_id and run.last_step == stopped_at + 30
    assert steps == sorted(set(steps)) and steps[-1] == stopped_at + 30
