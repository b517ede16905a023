"""Real ledgers, synthetic events and child processes for the fault-injection tests.

Run as a script (`python reliability_helpers.py write LEDGER RUN_ID`) it is a writer process that
logs events until it is killed: the kill -9 tests need a process that starts in a fraction of a second.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

from twotier.store import Kind, Ledger, LedgerWriter, RunInfo, RunStatus, StepEvent, create_run, open_ledger


def event(run_id: str, step: int, *, prompt: str | None = None, golden: str = "cba", kind: Kind = Kind.FAST,
          loss: float | None = 1.5, model_output: str | None = None) -> StepEvent:  # fmt: skip
    """A fast log (or full eval) as the engine would publish it, without training anything."""
    return StepEvent(
        run_id=run_id, step=step, kind=kind, wall_time=time.time(), elapsed_s=float(step), prompt=prompt or
        f"reverse abc{step}=", golden=golden, loss=loss, prompt_tokens=9, golden_tokens=4, batch_loss=loss,
        learning_rate=1e-3, grad_norm=0.5, tokens_per_s=1000.0, epoch=0.1, model_output=model_output,
    )  # fmt: skip


def new_run(path: Path, run_id: str = "run-1", **open_kwargs: object) -> Ledger:
    """Open (create) a ledger for writing and record a running run in it."""
    ledger = open_ledger(path, **open_kwargs)
    now = time.time()
    create_run(ledger, RunInfo(id=run_id, name=run_id, status=RunStatus.RUNNING, model="demo", dataset="demo",
                               config={}, started_at=now, heartbeat_at=now, max_steps=None))  # fmt: skip
    return ledger


def integrity(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes the ledger's write lock for `seconds`; returns once it holds it."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "c.execute('COMMIT')\n"
    )
    child = subprocess.Popen([PYTHON, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def start_writer_process(path: Path, run_id: str) -> subprocess.Popen[str]:
    """A child that writes events to `run_id` as fast as its writer commits, until killed."""
    child = subprocess.Popen([PYTHON, __file__, "write", str(path), run_id], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    return child


TINY = {"log_steps": 1, "eval_steps": 0, "max_steps": 8, "batch_size": 8, "learning_rate": 3e-3, "eval_samples": 8,
        "probe_size": 4, "max_length": 64, "max_new_tokens": 4}  # fmt: skip


def train_tiny(tmp: Path, run_options: dict[str, Any] | None = None, **overrides: Any) -> tuple[Any, list[StepEvent]]:
    """Train the demo for a few steps with TrainingRun options (e.g. callbacks); returns (RunEnded, events)."""
    from twotier.engine.config import load_config
    from twotier.engine.runner import RunEnded, TrainingRun

    config = load_config(None, {**TINY, "ledger": str(tmp / "ledger.db"), "output_dir": str(tmp / "out"), **overrides})
    run = TrainingRun(config, **(run_options or {}))
    run.start()
    events: list[StepEvent] = []
    while not isinstance(message := run.events.get(timeout=300), RunEnded):
        events.append(message)
    run.join(60)
    return message, events


def _write_forever(path: Path, run_id: str) -> None:
    ledger = open_ledger(path)
    writer = LedgerWriter(ledger, run_id, flush_interval=0.02)
    print("writing", flush=True)
    step = 0
    while True:
        step += 1
        writer.submit(event(run_id, step, prompt=f"reverse {step}=" * (1 + step % 7)))
        if step % 50 == 0:
            time.sleep(0.01)


if __name__ == "__main__" and sys.argv[1:2] == ["write"]:
    _write_forever(Path(sys.argv[2]), sys.argv[3])


@contextmanager
def mounted_tmpfs(point: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `point` for the test's length; skips where mounting needs root."""
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
