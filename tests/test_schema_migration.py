"""A ledger written by an older twotier is upgraded in place when opened, its events kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twotier.store import LedgerReader, open_ledger
from twotier.store.schema import SCHEMA_VERSION

OLD_LEDGER = Path(__file__).parent / "data" / "ledger-v2.sql"


def old_ledger(path: Path, version: int = 2) -> Path:
    """The real ledger of schema version 2 that `data/ledger-v2.sql` holds (version 1 had no eval_error)."""
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_LEDGER.read_text(encoding="utf-8"))
        if version == 1:
            connection.execute("ALTER TABLE event DROP COLUMN eval_error")
            connection.execute("PRAGMA user_version = 1")
    connection.close()
    return path


def columns(path: Path, table: str = "event") -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA user_version").fetchone()[0]


def test_a_writer_migrates_a_version_one_ledger_and_keeps_its_events(tmp_path):
    path = old_ledger(tmp_path / "ledger.db", version=1)
    assert "eval_error" not in columns(path)
    open_ledger(path).close()
    assert "eval_error" in columns(path) and user_version(path) == SCHEMA_VERSION
    with LedgerReader(path) as reader:
        events = reader.events_after("0ld0ld0ld0ld")
    assert [(e.step, e.loss, e.eval_error) for e in events] == [(5, 1.5, None), (10, 0.5, None)]


def test_held_out_accuracy_columns_become_probe_accuracy_with_their_values(tmp_path):
    path = old_ledger(tmp_path / "ledger.db")
    open_ledger(path).close()
    assert {"probe_accuracy", "probe_token_accuracy"} <= columns(path)
    assert not {"heldout_accuracy", "heldout_token_accuracy"} & columns(path)
    with LedgerReader(path) as reader:
        (full,) = reader.full_evals("0ld0ld0ld0ld")
    assert (full.probe_accuracy, full.probe_token_accuracy, len(reader_probes(path, full.id))) == (0.5, 0.75, 2)


def reader_probes(path: Path, event_id: int | None) -> tuple:
    assert event_id is not None
    with LedgerReader(path) as reader:
        return reader.probes(event_id)


def test_the_writing_process_moves_out_of_an_old_runs_config(tmp_path):
    path = old_ledger(tmp_path / "ledger.db")
    with LedgerReader(path) as reader:
        run = reader.run("old-run")
    assert (run.host, run.pid) == ("old-host", 4242)
    assert run.config == {"log_steps": 5}


def test_a_viewer_opening_an_older_ledger_upgrades_it_first(tmp_path):
    path = old_ledger(tmp_path / "ledger.db", version=1)
    with LedgerReader(path) as reader:
        assert [run.id for run in reader.runs()] == ["0ld0ld0ld0ld"]
    assert "eval_error" in columns(path) and user_version(path) == SCHEMA_VERSION


def test_a_current_ledger_missing_a_declared_column_gets_it_on_open(tmp_path):
    path = tmp_path / "ledger.db"
    open_ledger(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE event DROP COLUMN epoch")
    connection.close()
    with LedgerReader(path) as reader:
        assert reader.runs() == []
    assert "epoch" in columns(path)
