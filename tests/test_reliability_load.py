"""One writer, a polling reader and an export on the same ledger at once: no lock errors, nothing lost."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from support import event, integrity, new_run
from twotier.store import LedgerReader, LedgerWriter, RunStatus
from twotier.store.db import JOURNAL_LIMIT_BYTES, WAL_AUTOCHECKPOINT_PAGES
from twotier.store.export import EVENT_COLUMNS, event_records, write_records

EVENTS = 20_000


class Poller(threading.Thread):
    """A viewer: reads the run's tail every 100 ms, as the app does, and keeps every error it meets."""

    def __init__(self, path: Path, run_id: str, wal: Path | None = None, batch: int = 500) -> None:
        super().__init__(daemon=True)
        self.path, self.run_id, self.wal, self.batch = path, run_id, wal, batch
        self.seen: list[int] = []
        self.errors: list[str] = []
        self.largest_wal = 0
        self.done = threading.Event()

    def run(self) -> None:
        with LedgerReader(self.path) as reader:
            while True:
                finishing = self.done.is_set()
                try:
                    while batch := reader.events_after(
                        self.run_id, self.seen[-1] if self.seen else 0, limit=self.batch
                    ):
                        self.seen.extend(e.id for e in batch)
                    reader.run(self.run_id)
                except Exception as err:  # noqa: BLE001 - the test asserts there are none
                    self.errors.append(f"{type(err).__name__}: {err}")
                if self.wal is not None and self.wal.exists():
                    self.largest_wal = max(self.largest_wal, self.wal.stat().st_size)
                if finishing:
                    return
                time.sleep(0.1)


def test_reader_and_export_during_twenty_thousand_writes_see_every_event_once_and_no_lock(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = new_run(path)
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.02)
    poller = Poller(path, "run-1")
    poller.start()
    export_errors: list[str] = []
    exported: list[int] = []
    for step in range(1, EVENTS + 1):
        writer.submit(event("run-1", step, prompt=f"reverse {step % 997}="))
        if step % 5000 == 0:
            try:
                with LedgerReader(path) as reader:
                    exported.append(write_records(event_records(reader, "run-1"), EVENT_COLUMNS, "csv", io.StringIO()))
            except Exception as err:  # noqa: BLE001 - the test asserts there are none
                export_errors.append(f"{type(err).__name__}: {err}")
    writer.close(RunStatus.FINISHED)
    poller.done.set()
    poller.join(120)
    assert poller.errors == [] and export_errors == []
    assert len(poller.seen) == EVENTS and len(set(poller.seen)) == EVENTS
    assert exported == sorted(exported) and len(exported) == 4
    with LedgerReader(path) as reader:
        assert [e.step for e in reader.iter_events("run-1")] == list(range(1, EVENTS + 1))
    assert integrity(path) == "ok"


def test_wal_file_stays_bounded_while_a_reader_polls_through_a_long_run(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = new_run(path)
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.02)
    # The app reads a few dozen events a poll; a reader's snapshot lasts one read, and while one lasts the
    # writer's checkpoint cannot rewind the WAL past it.
    poller = Poller(path, "run-1", wal=Path(f"{path}-wal"), batch=50)
    poller.start()
    text = "w" * 6000  # every event brings new text: the database grows to many times the WAL's bound
    for step in range(1, 8001):
        writer.submit(event("run-1", step, prompt=f"{step}{text}"))
    writer.close(RunStatus.FINISHED)
    poller.done.set()
    poller.join(120)
    bound = WAL_AUTOCHECKPOINT_PAGES * 4096 + JOURNAL_LIMIT_BYTES
    print(f"database {path.stat().st_size} bytes, largest -wal seen {poller.largest_wal} bytes, bound {bound}")
    # A passive checkpoint that meets a reader mid-read cannot rewind the WAL, so how many rounds it takes
    # depends on the machine's speed: what holds everywhere is that the -wal file stays a small part of a
    # database that grew to many times its bound, instead of growing with the run.
    assert path.stat().st_size > 5 * bound
    assert 0 < poller.largest_wal < path.stat().st_size / 3
