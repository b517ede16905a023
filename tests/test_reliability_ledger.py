"""The ledger under faults: locks, a full disk, damaged files, versions, odd filesystems, backups."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from support import PYTHON, REPO, event, hold_write_lock, integrity, mounted_tmpfs, new_run, wait_for
from twotier.store import LedgerError, LedgerReader, LedgerWriter, RunStatus, open_ledger
from twotier.store.backup import backup_ledger
from twotier.store.db import BUSY_TIMEOUT_MS, filesystem_type, is_network_filesystem
from twotier.store.schema import SCHEMA_VERSION


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def written_ledger(path: Path, events: int = 20, run_id: str = "run-1") -> Path:
    ledger = new_run(path, run_id)
    writer = LedgerWriter(ledger, run_id)
    for step in range(1, events + 1):
        writer.submit(event(run_id, step))
    writer.close(RunStatus.FINISHED)
    ledger.close()
    return path


def test_a_write_transaction_takes_the_write_lock_when_it_begins(ledger_path):
    ledger = new_run(ledger_path)
    other = sqlite3.connect(ledger_path, timeout=0, isolation_level=None)
    with ledger.db.atomic(), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")


def test_writers_and_readers_wait_for_a_lock_up_to_the_busy_timeout(ledger_path):
    writer = new_run(ledger_path, busy_timeout_ms=1234)
    assert writer.db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 1234
    with LedgerReader(ledger_path) as reader:
        assert reader.ledger.db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_reader_holds_no_read_transaction_between_polls(ledger_path):
    written_ledger(ledger_path, events=300)
    with LedgerReader(ledger_path) as reader:
        assert len(reader.events_after("run-1", limit=100)) == 100
        list(reader.iter_events("run-1"))
        reader.run("latest")
        checkpointer = sqlite3.connect(ledger_path)
        # A TRUNCATE checkpoint needs every reader out of the WAL: it fails while one holds a snapshot.
        busy, _, _ = checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        assert Path(f"{ledger_path}-wal").stat().st_size == 0


def write_through_a_held_lock(ledger_path, caplog, seconds: float, busy_timeout_ms: int) -> None:
    ledger = new_run(ledger_path, busy_timeout_ms=busy_timeout_ms)
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.05)
    writer.submit(event("run-1", 1))
    holder = hold_write_lock(ledger_path, seconds=seconds)
    with caplog.at_level(logging.WARNING, logger="twotier.ledger"):
        for step in range(2, 302):
            writer.submit(event("run-1", step))
        assert holder.poll() is None  # every submit returned while the lock was still held
        holder.wait(seconds + 30)
        writer.close(RunStatus.FINISHED)
    with LedgerReader(ledger_path) as reader:
        assert [e.step for e in reader.iter_events("run-1")] == list(range(1, 302))
        assert reader.run("run-1").status is RunStatus.FINISHED
    locked = [r.getMessage() for r in caplog.records if "is locked by another process" in r.getMessage()]
    released = [r.getMessage() for r in caplog.records if "the lock went after" in r.getMessage()]
    assert len(locked) == 1 and len(released) == 1


def test_training_goes_on_while_another_process_holds_the_lock_and_the_backlog_is_written(ledger_path, caplog):
    write_through_a_held_lock(ledger_path, caplog, seconds=2, busy_timeout_ms=200)


@pytest.mark.reliability
def test_a_long_lock_past_the_busy_timeout_loses_nothing(ledger_path, caplog):
    """60 s under `make test-reliability` (TWOTIER_LOCK_S), 8 s in `make test`; the default busy timeout."""
    write_through_a_held_lock(
        ledger_path, caplog, seconds=float(os.environ.get("TWOTIER_LOCK_S", "8")), busy_timeout_ms=BUSY_TIMEOUT_MS
    )


def test_a_full_disk_stops_the_writer_with_no_partial_event_and_the_run_marked_failed(ledger_path):
    ledger = new_run(ledger_path)
    pages = ledger.db.execute_sql("PRAGMA page_count").fetchone()[0]
    # A real SQLite limit on the writer thread's own connection: the file may not grow past 40 more pages.
    ledger.db.pragma("max_page_count", pages + 40, permanent=True)
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.05)
    writer.submit(event("run-1", 1))
    big = "x" * 400_000
    for step in range(2, 6):
        writer.submit(event("run-1", step, prompt=big + str(step)))
    with pytest.raises(LedgerError, match="full"):
        writer.close(RunStatus.FINISHED)
    assert writer.failure is not None and "full" in writer.failure
    assert integrity(ledger_path) == "ok"
    with LedgerReader(ledger_path) as reader:
        run = reader.run("run-1")
        stored = list(reader.iter_events("run-1"))
    assert run.status is RunStatus.FAILED and "full" in (run.error or "")
    assert [e.step for e in stored] == list(range(1, len(stored) + 1)) and len(stored) < 5
    assert all(e.prompt == big + str(e.step) for e in stored[1:])  # whole events or none


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(ledger_path):
    ledger_path.write_bytes(b"my precious notes\n" * 100)
    for readonly in (False, True):
        with pytest.raises(LedgerError, match="not a SQLite file"):
            open_ledger(ledger_path, readonly=readonly)
    assert ledger_path.read_bytes() == b"my precious notes\n" * 100


def test_another_programs_sqlite_database_is_refused_and_left_alone(ledger_path):
    with sqlite3.connect(ledger_path) as other:
        other.execute("CREATE TABLE notes (body TEXT)")
    before = ledger_path.read_bytes()
    with pytest.raises(LedgerError, match="not a twotier ledger"):
        open_ledger(ledger_path)
    assert ledger_path.read_bytes() == before


@pytest.mark.parametrize("damage", ["flipped schema bytes", "truncated", "zeroed header"])
def test_a_damaged_ledger_is_one_clear_error_and_is_never_overwritten(ledger_path, damage):
    written_ledger(ledger_path, events=200)
    data = bytearray(ledger_path.read_bytes())
    if damage == "flipped schema bytes":
        for offset in range(100, 4096, 7):  # page 1 holds the schema, right after the 100-byte header
            data[offset] ^= 0xFF
    elif damage == "truncated":
        data = data[: len(data) // 3 + 17]
    else:
        data[:16] = bytes(16)
    ledger_path.write_bytes(bytes(data))
    for readonly in (True, False):
        with pytest.raises(LedgerError) as caught:
            with LedgerReader(ledger_path) if readonly else _writer(ledger_path) as reader:
                list(reader.iter_events("run-1"))
        assert "\n" not in str(caught.value) and str(ledger_path) in str(caught.value)
    assert ledger_path.read_bytes() == bytes(data)


def _writer(path: Path) -> LedgerReader:
    """Open for writing first (as training does), then read back through a reader."""
    open_ledger(path).close()
    return LedgerReader(path)


def test_a_ledger_from_a_newer_twotier_is_refused_for_reading_and_writing(ledger_path):
    written_ledger(ledger_path)
    with sqlite3.connect(ledger_path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for readonly in (False, True):
        with pytest.raises(LedgerError, match="newer than this twotier understands"):
            open_ledger(ledger_path, readonly=readonly)


def test_the_schema_version_is_recorded(ledger_path):
    written_ledger(ledger_path)
    with sqlite3.connect(ledger_path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_four_processes_opening_a_fresh_ledger_at_once_end_with_one_schema(ledger_path):
    code = "import sys; from twotier.store import open_ledger; open_ledger(sys.argv[1]).close(); print('ok')"
    children = [
        subprocess.Popen(
            [PYTHON, "-c", code, str(ledger_path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0, 0], results
    with sqlite3.connect(ledger_path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert sorted(tables) == ["event", "probe", "request", "run", "text"]
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert integrity(ledger_path) == "ok"


def test_filesystem_type_comes_from_the_longest_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    share = tmp_path / "share"
    share.mkdir()
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {share} nfs4 rw 0 0\n")
    assert filesystem_type(share / "sub", mounts) == "nfs4"
    assert filesystem_type(tmp_path, mounts) == "ext4"
    assert [is_network_filesystem(kind) for kind in ("nfs4", "cifs", "fuse.sshfs", "ext4", "tmpfs")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_a_ledger_on_a_network_filesystem_falls_back_to_a_rollback_journal_and_says_so(tmp_path, caplog):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\n//server/share {tmp_path} cifs rw 0 0\n")
    with caplog.at_level(logging.WARNING, logger="twotier.ledger"):
        ledger = open_ledger(tmp_path / "ledger.db", mounts=mounts)
    assert ledger.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert any("network filesystem (cifs)" in record.getMessage() for record in caplog.records)
    assert open_ledger(tmp_path / "local.db").db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.fixture
def readonly_mount(tmp_path: Path):
    """A real read-only filesystem (a tmpfs remounted read-only); needs root."""
    with mounted_tmpfs(tmp_path / "ro", "4m") as point:
        yield point


def test_a_ledger_in_a_read_only_place_is_readable_but_training_refuses_it(readonly_mount):
    path = written_ledger(readonly_mount / "ledger.db")
    subprocess.run(["mount", "-o", "remount,ro", str(readonly_mount)], check=True)
    with LedgerReader(path) as reader:
        assert len(list(reader.iter_events("run-1"))) == 20
    with pytest.raises(LedgerError, match="read-only place"):
        open_ledger(path)


def test_backup_is_a_consistent_copy_taken_while_a_writer_writes(ledger_path, tmp_path):
    ledger = new_run(ledger_path)
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.01)
    for step in range(1, 3001):
        writer.submit(event("run-1", step))
    copy = tmp_path / "backup.db"
    assert backup_ledger(ledger_path, copy) > 0
    writer.close(RunStatus.FINISHED)
    assert integrity(copy) == "ok"
    with LedgerReader(copy) as reader:
        steps = [e.step for e in reader.iter_events("run-1")]
    assert steps == list(range(1, len(steps) + 1))
    with pytest.raises(LedgerError, match="will not overwrite"):
        backup_ledger(ledger_path, copy)


def test_damage_in_a_data_page_is_one_ledger_error_when_read(ledger_path):
    ledger = new_run(ledger_path)
    writer = LedgerWriter(ledger, "run-1")
    for step in range(1, 2001):
        writer.submit(event("run-1", step, prompt=f"reverse {step}=" * 20))
    writer.close(RunStatus.FINISHED)
    ledger.close()
    with sqlite3.connect(ledger_path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
    with ledger_path.open("r+b") as handle:
        for page in range(pages // 2, pages - 1):  # the later half: the event table's pages, not page 1
            handle.seek(page * page_size)
            handle.write(b"\xff" * page_size)
    with pytest.raises(LedgerError, match="the ledger is damaged or unreadable"):
        with LedgerReader(ledger_path) as reader:
            list(reader.iter_events("run-1"))


def test_a_reader_opened_beside_a_live_writer_does_not_cost_the_writer_its_wal(ledger_path):
    # The app reads the ledger in the process that trains into it. Were opening a reader to drop the writer's
    # locks, the next process to close the ledger would delete the WAL the writer still writes to, and every
    # later event would be lost to every other reader.
    ledger = new_run(ledger_path)
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.02)

    def seen_elsewhere() -> int:
        query = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM event').fetchone()[0])"
        done = subprocess.run([PYTHON, "-c", query, str(ledger_path)], capture_output=True, text=True, check=True)
        return int(done.stdout)

    writer.submit(event("run-1", 1))
    wait_for(lambda: seen_elsewhere() == 1, "the first event in another process")
    with LedgerReader(ledger_path) as reader:  # opened and closed in the writer's process
        reader.run("run-1")
    assert seen_elsewhere() == 1  # another process opens and closes the ledger
    writer.submit(event("run-1", 2))
    wait_for(lambda: seen_elsewhere() == 2, "the second event in another process")
    writer.close(RunStatus.FINISHED)
