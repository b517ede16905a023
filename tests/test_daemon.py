"""`twotier daemon` as a user runs it: real daemons in subprocesses serving a queue of short demo runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from support import SMALL, rows, start_daemon, twotier, wait_for, wait_for_status
from twotier.store import LedgerReader

SHORT = {**SMALL, "max_steps": 20, "log_steps": 5, "eval_steps": 10, "batch_size": 8, "eval_samples": 16,
         "probe_size": 4, "max_new_tokens": 6}  # fmt: skip
# A run long enough to be interrupted, with a checkpoint every 10 steps to resume from.
LONG = {**SHORT, "max_steps": 60, "log_steps": 1, "eval_steps": 0, "training_args": {"save_steps": 10}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(SHORT))
    (tmp_path / "long.json").write_text(json.dumps(LONG))
    return tmp_path


def submit(folder: Path, *flags: str) -> str:
    result = twotier(folder, "submit", *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def long_flags(name: str) -> list[str]:
    return ["long.json", "--run-name", name]


def ledger_of(folder: Path) -> Path:
    return folder / "runs" / "ledger.db"


def no_duplicates(ledger: Path, run_id: str) -> bool:
    return not rows(ledger, "SELECT step, kind, count(*) FROM event WHERE run_id = ? AND NOT superseded "
                    "GROUP BY step, kind HAVING count(*) > 1", run_id)  # fmt: skip


def stop_daemon(daemon: subprocess.Popen[str]) -> str:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    output, _ = daemon.communicate(timeout=300)
    return output


def test_two_submitted_runs_finish_in_order_each_with_its_events(folder):
    first, second = submit(folder, "--run-name", "first"), submit(folder, "--run-name", "second", "--max-steps", "10")
    daemon = start_daemon(folder)
    try:
        wait_for_status(ledger_of(folder), second, "finished")
    finally:
        log = stop_daemon(daemon)
    with LedgerReader(ledger_of(folder)) as reader:
        runs = {run.id: run for run in reader.runs()}
        events = {run_id: [(e.step, e.kind.value) for e in reader.iter_events(run_id)] for run_id in (first, second)}
    assert runs[first].ended_at is not None and runs[first].ended_at <= runs[second].started_at
    assert events[first] == [(5, "fast"), (10, "full"), (15, "fast"), (20, "full")]
    assert events[second] == [(5, "fast"), (10, "full")]
    assert log.index(f"started run {first}") < log.index(f"started run {second}")


def test_a_bad_config_is_refused_at_submit_in_one_line_and_nothing_is_queued(folder):
    result = twotier(folder, "submit", "--log-steps", "-3")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("twotier: error: ") and line.endswith("'log_steps' must be 0 or more, got -3")
    missing = twotier(folder, "submit", "--dataset", "nope.jsonl")
    assert missing.returncode == 2 and "nope.jsonl: dataset file not found" in missing.stderr
    assert not ledger_of(folder).exists()


def test_the_queue_lists_runs_in_order_and_a_queued_run_can_be_moved_and_cancelled(folder):
    ids = [submit(folder, "--run-name", name) for name in ("a", "b", "c")]
    assert twotier(folder, "move", ids[2], "1").returncode == 0
    assert twotier(folder, "cancel", ids[0]).returncode == 0
    listing = twotier(folder, "queue").stdout
    assert listing.index(ids[2]) < listing.index(ids[1]) and ids[0] not in listing
    with LedgerReader(ledger_of(folder)) as reader:
        assert reader.run(ids[0]).status.value == "cancelled"


def test_a_second_daemon_on_the_same_ledger_refuses_in_one_line(folder):
    submit(folder, "--run-name", "x", "--max-steps", "10")
    daemon = start_daemon(folder)
    try:
        second = twotier(folder, "daemon", "--ledger", str(ledger_of(folder)))
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"twotier: error: {ledger_of(folder)}: a daemon already serves this ledger (pid {daemon.pid});"
            " one daemon per ledger"
        ]
    finally:
        stop_daemon(daemon)


@pytest.mark.parametrize("how", ["sigterm", "kill -9"])
def test_an_interrupted_daemon_run_is_resumed_by_the_next_daemon_and_the_queue_goes_on(folder, how):
    long_run, after = submit(folder, *long_flags("long")), submit(folder, "--run-name", "after", "--max-steps", "10")
    ledger = ledger_of(folder)
    daemon = start_daemon(folder)
    wait_for(lambda: rows(ledger, "SELECT last_step FROM run WHERE id = ?", long_run)[0][0] >= 15, "step 15", 300)
    if how == "sigterm":
        stop_daemon(daemon)
        assert wait_for_status(ledger, long_run, "stopped") == "stopped"
    else:
        daemon.send_signal(signal.SIGKILL)  # its run gets SIGTERM from the kernel (the parent-death signal)
        daemon.wait(30)
        wait_for_status(ledger, long_run, "stopped", "stale")
    daemon = start_daemon(folder)
    try:
        wait_for_status(ledger, after, "finished")
    finally:
        log = stop_daemon(daemon)
    assert f"run {long_run} (long) was interrupted at step" in log
    with LedgerReader(ledger) as reader:
        resumed = reader.run(long_run)
    assert resumed.status.value == "finished" and resumed.last_step == 60
    assert no_duplicates(ledger, long_run)


def test_a_run_whose_process_dies_is_failed_and_the_daemon_serves_the_next(folder):
    doomed, after = submit(folder, *long_flags("doomed")), submit(folder, "--run-name", "after", "--max-steps", "10")
    ledger = ledger_of(folder)
    daemon = start_daemon(folder)
    try:
        wait_for_status(ledger, doomed, "running")
        pid = rows(ledger, "SELECT pid FROM run WHERE id = ?", doomed)[0][0]
        os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        wait_for_status(ledger, after, "finished")
    finally:
        stop_daemon(daemon)
    with LedgerReader(ledger) as reader:
        failed = reader.run(doomed)
    assert failed.status.value == "failed" and "signal 9" in (failed.error or "")


def test_a_run_that_fails_is_not_retried_and_can_be_resubmitted(folder):
    (folder / "broken.jsonl").write_text('{"prompt": "x", "answer": ""}\n' * 40)
    broken, after = (
        submit(folder, "--dataset", "broken.jsonl"),
        submit(folder, "--run-name", "after", "--max-steps", "10"),
    )
    ledger = ledger_of(folder)
    daemon = start_daemon(folder)
    try:
        wait_for_status(ledger, after, "finished")
    finally:
        stop_daemon(daemon)
    assert run_error(ledger, broken).endswith("'answer' is empty; there is nothing to learn")
    again = twotier(folder, "resubmit", broken)
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] != broken
    assert twotier(folder, "queue").stdout.count("queued") == 1


def run_error(ledger: Path, run_id: str) -> str:
    with LedgerReader(ledger) as reader:
        run = reader.run(run_id)
    assert run.status.value == "failed", run
    return run.error or ""


def test_a_daemon_started_before_any_run_creates_the_ledger_and_serves_the_first_submit(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SHORT))
    daemon = start_daemon(tmp_path)  # no runs/ folder, no ledger yet: a fresh server
    try:
        run_id = submit(tmp_path, "--max-steps", "5", "--eval-steps", "5")
        assert wait_for_status(ledger_of(tmp_path), run_id, "finished", "failed") == "finished"
    finally:
        assert "Traceback" not in stop_daemon(daemon)
