"""Before its first step a run says what it is doing: in the ledger (for a viewer in any process), in the app's
header, and with the libraries' own progress bars in headless mode."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from support import headless, wait_for
from twotier.engine.runner import Phases
from twotier.store import LedgerReader, LedgerWriter, RunInfo, RunStatus, create_run, open_ledger
from twotier.tui.app import make_app
from twotier.tui.app.widgets.run_header import RunHeader


def live_run(path: Path, run_id: str = "l0ad1ng00001") -> LedgerWriter:
    ledger = open_ledger(path)
    now = time.time()
    info = RunInfo(
        id=run_id,
        name="loading",
        status=RunStatus.RUNNING,
        model="demo",
        dataset="big.jsonl",
        config={},
        started_at=now - 40,
        heartbeat_at=now,
        max_steps=1000,
        host=socket.gethostname(),
        pid=os.getpid(),
        phase=Phases.start("loading the model", now - 40),
    )
    create_run(ledger, info)
    return LedgerWriter(ledger, run_id, flush_interval=0.01)


def phase_of(path: Path, run_id: str = "l0ad1ng00001") -> dict | None:
    with LedgerReader(path) as reader:
        return reader.run(run_id).phase


def test_the_phase_travels_through_the_ledger(tmp_path):
    writer = live_run(tmp_path / "ledger.db")
    phases = Phases(writer)
    phases("tokenizing", 540_000, 1_200_000)
    wait_for(lambda: (phase_of(tmp_path / "ledger.db") or {}).get("done") == 540_000, "the phase in the ledger")
    assert phase_of(tmp_path / "ledger.db")["name"] == "tokenizing"  # type: ignore[index]
    writer.training_began()
    wait_for(lambda: phase_of(tmp_path / "ledger.db") is None, "the phase cleared when training begins")
    writer.close(RunStatus.FINISHED)


@pytest.mark.anyio
async def test_the_app_header_shows_the_loading_phase_of_a_run_in_another_process(tmp_path):
    writer = live_run(tmp_path / "ledger.db")
    writer.set_phase({"name": "tokenizing", "done": 540_000, "total": 1_200_000, "since": time.time() - 25})
    wait_for(lambda: phase_of(tmp_path / "ledger.db")["name"] == "tokenizing", "the phase in the ledger")  # type: ignore[index]
    app = make_app(attach=tmp_path / "ledger.db")
    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(200):
            header = app.query_one(RunHeader).render_text().plain
            if "tokenizing" in header:
                break
            await pilot.pause(0.05)
    writer.close(RunStatus.STOPPED)
    assert "● running  ·  tokenizing 1,200,000 rows · 45% · 0:00:3" in header and " left" in header
    assert "loading 0:00:" in header  # the elapsed time says that it is all loading so far
    assert "waiting for the run" not in header


def test_a_finished_run_records_when_training_began_after_its_loading(short_run):
    with LedgerReader(short_run.ledger) as reader:
        run = reader.run(short_run.run_id)
    assert run.phase is None
    assert run.trained_from is not None and run.started_at < run.trained_from < (run.ended_at or 0)


def test_headless_draws_the_datasets_progress_bars_on_stderr(tmp_path):
    rows = [{"prompt": f"reverse {w}=", "answer": w[::-1]} for w in ("abc", "defg", "hij", "klmno") * 100]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    result = headless(
        tmp_path, "--max-steps", "2", "--eval-steps", "0", "--dataset", str(data), config={"cache_dir": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert "tokenizing 400 rows" in result.stderr and "100%" in result.stderr
