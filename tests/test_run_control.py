"""The owning thread pauses, resumes and stops a run; stop means checkpoint, flush, status stopped."""

from __future__ import annotations

import time

from support import ENDLESS
from twotier.engine.config import load_config
from twotier.engine.runner import RunEnded, TrainingRun
from twotier.store import LedgerReader, RunStatus


def long_run(tmp_path) -> TrainingRun:
    folder = {"ledger": str(tmp_path / "ledger.db"), "output_dir": str(tmp_path / "out")}
    config = load_config(None, {**ENDLESS, "log_steps": 2, **folder})
    run = TrainingRun(config)
    run.start()
    run.events.get(timeout=120)  # the first fast log: training is under way
    return run


def wait_for_status(ledger, run_id, status, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with LedgerReader(ledger) as reader:
            if reader.run(run_id).status is status:
                return True
        time.sleep(0.1)
    return False


def drain_until_end(run: TrainingRun) -> RunEnded:
    while not isinstance(message := run.events.get(timeout=120), RunEnded):
        pass
    return message


def test_stop_finishes_the_step_writes_a_checkpoint_and_marks_the_run_stopped(tmp_path):
    run = long_run(tmp_path)
    run.stop()
    ended = drain_until_end(run)
    assert ended.status is RunStatus.STOPPED
    with LedgerReader(tmp_path / "ledger.db") as reader:
        recorded = reader.run(run.run_id)
    assert recorded.status is RunStatus.STOPPED and recorded.last_step < 5000
    checkpoints = list((tmp_path / "out" / run.run_id).glob("checkpoint-*/model.safetensors"))
    assert checkpoints, "a stopped run leaves a checkpoint to resume from"


def test_pause_shows_in_the_ledger_and_unpause_continues(tmp_path):
    run = long_run(tmp_path)
    run.pause()
    assert wait_for_status(tmp_path / "ledger.db", run.run_id, RunStatus.PAUSED)
    while not run.events.empty():
        run.events.get()
    time.sleep(0.5)
    assert run.events.empty(), "no events while paused"
    run.unpause()
    assert run.events.get(timeout=60).step > 0
    assert wait_for_status(tmp_path / "ledger.db", run.run_id, RunStatus.RUNNING)
    run.stop()
    assert drain_until_end(run).status is RunStatus.STOPPED
