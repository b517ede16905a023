"""A real training run whose ledger's disk fills up: the run stops as failed with the reason, the ledger intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from support import mounted_tmpfs, train_tiny
from twotier.store import LedgerReader, RunStatus


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 320 KiB tmpfs: room for the ledger's schema and a few hundred events; needs root."""
    with mounted_tmpfs(tmp_path / "small", "320k") as point:
        yield point


def test_a_full_disk_stops_training_as_failed_and_keeps_the_ledger_intact(tmp_path, small_disk):
    ended = train_tiny(tmp_path, ledger=str(small_disk / "ledger.db"), log_steps=1, eval_steps=0, max_steps=5000)
    assert ended.status is RunStatus.FAILED
    assert "full" in ended.error
    assert len(ended.events) < 5000
    with sqlite3.connect(small_disk / "ledger.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with LedgerReader(small_disk / "ledger.db") as reader:
        run = reader.run("latest")
        stored = [e.step for e in reader.iter_events(run.id)]
    assert run.status is RunStatus.FAILED and "full" in (run.error or "")
    assert stored == list(range(1, len(stored) + 1)), "whole batches only: no gap, no partial event"
