"""Processes that die or are told to stop: kill -9 at random points, and SIGINT/SIGTERM/SIGHUP to a headless run."""

from __future__ import annotations

import random
import signal
import time

import pytest

from support import integrity, new_run, start_headless, start_writer_process
from twotier.store import LedgerReader, RunStatus
from twotier.store.reader import STALE_AFTER_S

pytestmark = pytest.mark.reliability

WRITER_KILLS = 20
TRAINING_KILLS = 2


def test_writer_killed_at_random_points_leaves_an_intact_ledger_with_every_committed_event(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = new_run(path, "warm-up")
    chance = random.Random(5)
    committed_total = 0
    for kill in range(WRITER_KILLS):
        run_id = f"kill-{kill}"
        new_run(path, run_id)
        child = start_writer_process(path, run_id)
        seen: list[int] = []
        deadline = time.monotonic() + chance.uniform(0.05, 0.8)
        with LedgerReader(path) as reader:
            while time.monotonic() < deadline:
                seen.extend(e.id for e in reader.events_after(run_id, seen[-1] if seen else 0, limit=10_000))
                time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert integrity(path) == "ok", f"kill {kill}"
        with LedgerReader(path) as reader:
            stored = {e.id for e in reader.iter_events(run_id)}
            run = reader.run(run_id)
            assert set(seen) <= stored, f"kill {kill}: committed events lost"
            assert run.status is RunStatus.RUNNING
            assert reader.run_status(run, now=run.heartbeat_at + STALE_AFTER_S + 1) == "stale"
        committed_total += len(seen)
    ledger.close()
    assert committed_total > 0


@pytest.mark.parametrize("kill", range(TRAINING_KILLS))
def test_training_killed_mid_run_leaves_an_intact_ledger_and_a_stale_run(tmp_path, kill):
    child = start_headless(tmp_path)
    time.sleep(random.Random(kill).uniform(0.0, 1.5))
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    path = tmp_path / "ledger.db"
    assert integrity(path) == "ok"
    with LedgerReader(path) as reader:
        run = reader.run("latest")
        assert reader.run_status(run, now=run.heartbeat_at + STALE_AFTER_S + 1) == "stale"


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_finishes_the_step_checkpoints_flushes_and_marks_the_run_stopped(tmp_path, signum, status):
    child = start_headless(tmp_path)
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
    assert child.returncode == status, err
    with LedgerReader(tmp_path / "ledger.db") as reader:
        run = reader.run("latest")
        steps = [e.step for e in reader.iter_events(run.id)]
    assert run.status is RunStatus.STOPPED and run.ended_at is not None
    assert steps == list(range(1, run.last_step + 1))  # every step up to the stop was flushed
    assert (tmp_path / "out" / run.id / f"checkpoint-{run.last_step}").is_dir()
    assert f"stopped at step {run.last_step}" in out
