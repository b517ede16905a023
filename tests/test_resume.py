"""A stopped or crashed run goes on in place from its last complete checkpoint, with no duplicate rows."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from support import headless_command, start_headless, wait_for
from twotier.engine.config import load_config
from twotier.engine.resume import find_resume_point, last_complete_checkpoint
from twotier.engine.runner import RunEnded, TrainingRun
from twotier.store import LedgerReader, RunStatus, TwoTierError
from twotier.tui.console import ledger as ledger_cli

# The conftest reference run's settings, so a resumed run can be held against `short_run`.
REFERENCE = {
    "log_steps": 5,
    "eval_steps": 20,
    "max_steps": 40,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "eval_samples": 32,
    "probe_size": 8,
    "max_length": 64,
    "max_new_tokens": 8,
}


def resume(ledger: Path, ref: str) -> tuple[RunEnded, list]:
    run = TrainingRun(None, resume=find_resume_point(ledger, ref))  # type: ignore[arg-type]
    run.start()
    events = []
    while not isinstance(message := run.events.get(timeout=300), RunEnded):
        events.append(message)
    run.join(60)
    return message, events


def wait_until_committed(ledger: Path, step: int, timeout: float = 30.0) -> None:
    """Wait for the writer's batch holding `step` (it commits within about a quarter of a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with LedgerReader(ledger) as reader:
            if reader.run("latest").last_step >= step:
                return
        time.sleep(0.05)
    raise AssertionError(f"step {step} was never committed")


def killed_headless_run(tmp_path: Path, after_step: int) -> tuple[Path, str]:
    """A real headless run killed with SIGKILL once it has printed a fast log at `after_step` or later."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({**REFERENCE, "ledger": str(tmp_path / "ledger.db"), "output_dir": str(tmp_path / "out")})
    )
    process = subprocess.Popen(
        headless_command(config), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("📍 FAST LOG - Step") and int(line.split()[-1]) >= after_step:
            break
    wait_until_committed(tmp_path / "ledger.db", after_step)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    with LedgerReader(tmp_path / "ledger.db") as reader:
        return tmp_path / "ledger.db", reader.run("latest").id


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, RunEnded]:
    ledger, run_id = killed_headless_run(tmp_path_factory.mktemp("killed"), after_step=30)
    ended, _ = resume(ledger, run_id)
    return ledger, run_id, ended


def test_a_killed_run_resumes_in_place_and_ends_like_an_uninterrupted_one(killed_and_resumed, short_run):
    ledger, run_id, ended = killed_and_resumed
    assert ended.status is RunStatus.FINISHED and ended.run_id == run_id, ended.error
    with LedgerReader(ledger) as reader:
        events = list(reader.iter_events(run_id))
        assert reader.run(run_id).status is RunStatus.FINISHED
    assert [(e.step, e.kind) for e in events] == [(e.step, e.kind) for e in short_run.events]
    assert events[-1].val_loss == pytest.approx(short_run.events[-1].val_loss, rel=0.05)


def test_events_logged_after_the_checkpoint_are_superseded_not_deleted(killed_and_resumed):
    ledger, run_id, _ = killed_and_resumed
    with sqlite3.connect(ledger) as connection:
        rows = connection.execute("SELECT step, kind, superseded FROM event WHERE run_id = ?", (run_id,)).fetchall()
    superseded = [step for step, _, flag in rows if flag]
    assert superseded and min(superseded) > 20  # the last complete checkpoint was at the step-20 full eval
    live = Counter((step, kind) for step, kind, flag in rows if not flag)
    assert max(live.values()) == 1


def test_a_stopped_run_resumes_from_the_checkpoint_its_stop_wrote(tmp_path):
    config = load_config(
        None,
        {
            **REFERENCE,
            "max_steps": 60,
            "eval_steps": 0,
            "ledger": str(tmp_path / "ledger.db"),
            "output_dir": str(tmp_path / "out"),
        },
    )
    run = TrainingRun(config)
    run.start()
    first = run.events.get(timeout=300)
    run.stop()
    while not isinstance(message := run.events.get(timeout=300), RunEnded):
        pass
    assert message.status is RunStatus.STOPPED
    point = find_resume_point(config.ledger, run.run_id)
    assert first.step <= point.step < 60
    ended, events = resume(Path(config.ledger), run.run_id)
    assert ended.status is RunStatus.FINISHED
    assert events[0].step > point.step and events[-1].step == 60


def test_a_half_written_checkpoint_is_skipped(short_run, tmp_path):
    source = Path(short_run.config.output_dir) / short_run.run_id
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    assert last_complete_checkpoint(copy)[1] == 40
    (copy / "checkpoint-40" / "trainer_state.json").write_text('{"global_st')  # cut off mid-write
    assert last_complete_checkpoint(copy)[1] == 20


def test_a_finished_run_is_not_resumed(short_run):
    with pytest.raises(TwoTierError, match="finished at step 40; there is nothing to resume"):
        find_resume_point(short_run.ledger, short_run.run_id)


def test_headless_resume_flag_finishes_a_run_stopped_by_ctrl_c(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                **REFERENCE,
                "max_steps": 60,
                "eval_steps": 0,
                "ledger": str(tmp_path / "ledger.db"),
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    command = headless_command(config)
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    next(line for line in process.stdout if line.startswith("📍 FAST LOG"))
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130
    resumed = subprocess.run(
        [*command, "--resume", "latest"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.strip().splitlines()
    assert re.fullmatch(r"resuming run [0-9a-f]{12} from step \d+ \(\d+ later events superseded\)", lines[0])
    step = int(lines[0].split()[5])
    assert re.match(rf"✔ run [0-9a-f]{{12}} finished at step 60 \(resumed from step {step}\), train loss ", lines[-1])
    assert " took 0:0" in lines[-1]


def test_a_resumed_run_is_live_under_its_new_process_and_beats_its_heartbeat(tmp_path, capsys):
    first = start_headless(tmp_path)  # trains until stopped
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 130
    command = [*headless_command(tmp_path / "config.json"), "--resume", "latest"]
    second = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert second.stdout is not None
        assert second.stdout.readline().startswith("resuming run ")
        next(line for line in second.stdout if line.startswith("📍 FAST LOG"))
        ledger = tmp_path / "ledger.db"
        with LedgerReader(ledger) as reader:
            run = reader.run("latest")
            assert (run.pid, run.host, reader.run_status(run)) == (second.pid, socket.gethostname(), "running")

        def beat_again() -> bool:
            with LedgerReader(ledger) as reader:
                return reader.run(run.id).heartbeat_at > run.heartbeat_at

        wait_for(beat_again, "the resumed run's next heartbeat", timeout=30)
        assert ledger_cli.main(["ledger", "runs", "--ledger", str(ledger), "--status", "running"]) == 0
        assert run.id in capsys.readouterr().out
    finally:
        second.send_signal(signal.SIGINT)
        second.communicate(timeout=60)
    assert second.returncode == 130
