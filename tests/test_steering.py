"""Steering a run from anywhere: a request in the ledger, acted on at the next step end, marked done."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from support import ENDLESS, rows, start_headless, twotier, wait_for, wait_for_status
from twotier.engine.config import load_config
from twotier.engine.runner import RunEnded, TrainingRun
from twotier.store import LedgerReader, RunStatus, TwoTierError
from twotier.store.control import request_control
from twotier.store.records import Action
from twotier.tui.app import make_app
from twotier.tui.app.widgets.confirm import Confirm
from twotier.tui.app.widgets.run_header import RunHeader


@pytest.fixture
def training(tmp_path: Path):
    """A run training in a thread of this process until it is stopped."""
    folder = {"ledger": str(tmp_path / "ledger.db"), "output_dir": str(tmp_path / "out")}
    run = TrainingRun(load_config(None, {**ENDLESS, "eval_samples": 8, "probe_size": 4, **folder}))
    run.start()
    run.events.get(timeout=300)  # its first fast log: the run is recorded and training
    yield run
    run.stop()
    run.join(120)


def drain(run: TrainingRun) -> list:
    messages = []
    while not run.events.empty():
        messages.append(run.events.get())
    return messages


def request_is_done(ledger: Path, request_id: int | None) -> bool:
    assert request_id is not None
    with LedgerReader(ledger) as reader:
        return reader.request_done(request_id)


def test_a_pause_request_pauses_the_run_at_a_step_end_and_is_marked_done(training, tmp_path):
    ledger = tmp_path / "ledger.db"
    _, request = request_control(ledger, training.run_id, Action.PAUSE)
    wait_for_status(ledger, training.run_id, "paused", timeout=60)
    wait_for(lambda: request_is_done(ledger, request.id), "the pause request to be marked done", 30)
    drain(training)
    time.sleep(1.0)
    assert not [m for m in drain(training) if not isinstance(m, RunEnded)], "no step while paused"


def test_an_unpause_request_lets_a_paused_run_go_on(training, tmp_path):
    ledger = tmp_path / "ledger.db"
    request_control(ledger, training.run_id, Action.PAUSE)
    wait_for_status(ledger, training.run_id, "paused", timeout=60)
    _, request = request_control(ledger, training.run_id, Action.UNPAUSE)
    wait_for_status(ledger, training.run_id, "running", timeout=60)
    assert training.events.get(timeout=60).step > 0
    assert request_is_done(ledger, request.id)


def test_a_stop_request_checkpoints_flushes_and_ends_the_run_stopped_not_interrupted(training, tmp_path):
    ledger = tmp_path / "ledger.db"
    _, request = request_control(ledger, training.run_id, Action.STOP)
    assert training.join(120)
    assert training.ended is not None and training.ended.status is RunStatus.STOPPED
    with LedgerReader(ledger) as reader:
        run = reader.run(training.run_id)
        assert reader.request_done(request.id or 0)
    assert run.status is RunStatus.STOPPED and not run.interrupted
    assert list((tmp_path / "out" / run.id).glob("checkpoint-*/model.safetensors"))


def test_a_run_stopped_between_fast_logs_records_the_step_it_stopped_at(tmp_path):
    folder = {"ledger": str(tmp_path / "ledger.db"), "output_dir": str(tmp_path / "out")}
    run = TrainingRun(load_config(None, {**ENDLESS, "log_steps": 7, **folder}))
    run.start()
    run.events.get(timeout=300)  # step 7: the stop lands at some later step, between fast logs or on one
    request_control(tmp_path / "ledger.db", run.run_id, Action.STOP)
    assert run.join(120)
    (checkpoint,) = (tmp_path / "out" / run.run_id).glob("checkpoint-*")
    with LedgerReader(tmp_path / "ledger.db") as reader:
        assert reader.run(run.run_id).last_step == int(checkpoint.name.split("-")[1])


def test_a_request_for_a_run_that_ended_is_refused_in_one_line(short_run, tmp_path):
    with pytest.raises(TwoTierError, match="is finished: only a running or paused run can be steered"):
        request_control(short_run.ledger, short_run.run_id, Action.STOP)


def test_twotier_stop_from_another_terminal_stops_a_headless_run_and_says_how_long_it_took(tmp_path):
    child = start_headless(tmp_path)
    try:
        with LedgerReader(tmp_path / "ledger.db") as reader:
            run_id = reader.run("latest").id
        result = twotier(tmp_path, "stop", run_id, "--wait", "--ledger", str(tmp_path / "ledger.db"))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].startswith(f"run {run_id} is stopped at step ")
        assert child.wait(120) == 0  # a requested stop is a clean end, not a signal
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
    assert rows(tmp_path / "ledger.db", "SELECT count(*) FROM request WHERE done_at IS NULL") == [(0,)]


async def until(pilot: Pilot, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app never reached the expected state"
        await pilot.pause(0.1)


@pytest.mark.anyio
async def test_an_attached_app_pauses_shows_the_request_pending_and_stops_a_run_of_another_process(tmp_path):
    child = start_headless(tmp_path)
    try:
        app = make_app(attach=tmp_path / "ledger.db")
        async with app.run_test(size=(100, 30)) as pilot:
            header = app.query_one(RunHeader)
            await until(pilot, lambda: header.status == "running" and app.check_action("pause", ()))
            await pilot.press("p")
            await until(pilot, lambda: header.pending or header.status == "paused")
            await until(pilot, lambda: header.status == "paused" and not header.pending)
            await pilot.press("p")
            await until(pilot, lambda: header.status == "running")
            await pilot.press("x")
            assert isinstance(app.screen, Confirm)
            await pilot.press("y")
            await until(pilot, lambda: header.status == "stopped")
        assert child.wait(120) == 0
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
