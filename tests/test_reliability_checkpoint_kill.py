"""Kill -9 while checkpoints are being written, again and again: the next resume always succeeds.

A checkpoint is written at every step, so most kills land inside a save. `TWOTIER_KILLS` sets the count
(`make test-reliability` uses 20; `make test` a quicker 5).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support import ENDLESS, headless_command
from twotier.engine.resume import TRAINER_STATE, find_resume_point
from twotier.store import LedgerReader, RunStatus

pytestmark = pytest.mark.reliability
KILLS = int(os.environ.get("TWOTIER_KILLS", "5"))


def start(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        headless_command(tmp_path / "config.json", *extra),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def kill_after_first_event(process: subprocess.Popen[str], rng: random.Random) -> None:
    assert process.stdout is not None
    next(line for line in process.stdout if "FAST LOG" in line)
    time.sleep(rng.uniform(0.0, 0.8))
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def test_every_resume_after_a_kill_during_checkpointing_succeeds(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                **ENDLESS,
                "ledger": str(tmp_path / "ledger.db"),
                "output_dir": str(tmp_path / "out"),
                "training_args": {"save_steps": 1, "save_total_limit": 2},
            }
        )
    )
    rng = random.Random(7)
    cut_short = 0
    for kill in range(KILLS):
        kill_after_first_event(start(tmp_path, *(("--resume", "latest") if kill else ())), rng)
        point = find_resume_point(tmp_path / "ledger.db", "latest")
        newest = max((tmp_path / "out" / point.run_id).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        cut_short += not (newest / TRAINER_STATE).exists()
    point = find_resume_point(tmp_path / "ledger.db", "latest")
    final = start(tmp_path, "--resume", "latest", "--max-steps", str(point.step + 3))
    final.communicate(timeout=300)
    assert final.returncode == 0
    with LedgerReader(tmp_path / "ledger.db") as reader:
        run = reader.run("latest")
        steps = [(e.step, e.kind) for e in reader.iter_events(run.id)]
    assert run.status is RunStatus.FINISHED and run.last_step == point.step + 3
    assert len(steps) == len(set(steps)), "no (step, kind) twice among live rows"
    print(f"{KILLS} kills, {cut_short} of them left a half-written newest checkpoint")
