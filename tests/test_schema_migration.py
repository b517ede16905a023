"""A ledger written by an older twotier is upgraded in place when opened, its events kept."""

from __future__ import annotations

import sqlite3
import time

from twotier.store import Kind, LedgerReader, LedgerWriter, RunInfo, RunStatus, StepEvent, create_run, open_ledger
from twotier.store.models import SCHEMA_VERSION


def version_one_ledger(path) -> None:
    """A real ledger taken back to schema version 1, which had no event.eval_error column."""
    ledger = open_ledger(path)
    now = time.time()
    create_run(ledger, RunInfo(id="old", name="old", status=RunStatus.RUNNING, model="m", dataset="d", config={},
                               started_at=now, heartbeat_at=now))  # fmt: skip
    writer = LedgerWriter(ledger, "old")
    writer.submit(StepEvent(run_id="old", step=10, kind=Kind.FAST, wall_time=now, elapsed_s=1.0, prompt="p",
                            golden="g", loss=0.5, prompt_tokens=2, golden_tokens=1))  # fmt: skip
    writer.close(RunStatus.FINISHED)
    ledger.close()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE event DROP COLUMN eval_error")
        connection.execute("PRAGMA user_version = 1")


def columns(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[1] for row in connection.execute("PRAGMA table_info(event)")}


def test_a_writer_migrates_an_older_ledger_and_keeps_its_events(tmp_path):
    path = tmp_path / "ledger.db"
    version_one_ledger(path)
    assert "eval_error" not in columns(path)
    open_ledger(path).close()
    assert "eval_error" in columns(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with LedgerReader(path) as reader:
        (event,) = reader.events_after("old")
    assert (event.step, event.loss, event.eval_error) == (10, 0.5, None)


def test_a_viewer_opening_an_older_ledger_upgrades_it_first(tmp_path):
    path = tmp_path / "ledger.db"
    version_one_ledger(path)
    with LedgerReader(path) as reader:
        assert [run.id for run in reader.runs()] == ["old"]
    assert "eval_error" in columns(path)
