"""The single writer of a run: the training thread hands it events and never waits on disk.

Events cross a queue to one thread that commits them in small batches (SQLite's throughput
grows twentyfold from one insert per commit to batches of a hundred), keeps the run's heartbeat,
and sets the run's final status only after everything queued before it is on disk.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from peewee import DatabaseError, OperationalError

from .db import Ledger
from .errors import LedgerError
from .reader import pending_requests
from .records import ControlRequest, RunInfo, RunStatus, StepEvent
from .texts import TextInterner, storable

log = logging.getLogger("twotier.ledger")

FLUSH_INTERVAL_S = 0.25
HEARTBEAT_S = 5.0
MAX_BATCH = 500
RESERVE_BYTES = 128 * 1024
# About 30 columns an event: 100 rows stay well under SQLite's limit on bound variables.
ROWS_PER_INSERT = 100


@dataclass(frozen=True)
class _StatusChange:
    status: RunStatus
    error: str | None = None
    final: bool = False
    done: tuple[int, ...] = ()  # control requests this change carries out
    interrupted: bool = False  # a final stop that a signal caused, not a request
    step: int | None = None  # the step the run changed at, which may be past its last logged event


@dataclass(frozen=True)
class _PhaseChange:
    phase: dict[str, Any] | None
    trained_from: float | None = None


@dataclass
class _Pending:
    events: list[StepEvent] = field(default_factory=list)
    status: _StatusChange | None = None
    phase: _PhaseChange | None = None


def create_run(ledger: Ledger, run: RunInfo) -> None:
    """Record a new run; raises LedgerError when the ledger cannot be written (e.g. read-only)."""
    table = ledger.tables.run
    try:
        with ledger.db.atomic():
            table.model.insert(**table.row(run)).execute()
    except DatabaseError as err:
        raise LedgerError(f"{ledger.path}: cannot write to the ledger: {err}") from err


def reopen_run(ledger: Ledger, run_id: str, from_step: int, **fields: Any) -> int:
    """Mark a run running (again) from `from_step`, written by this process: a stopped or crashed run
    resumed (its later events are superseded, kept but not read), or a queued one started (step 0).
    `fields`: other `RunInfo` fields that are this process's now (world size, hosts...).
    Returns how many events were superseded: the resumed run logs those steps again.
    """
    Event, Run = ledger.tables.event.model, ledger.tables.run.model
    updates: dict[str, Any] = {}
    for column in ledger.tables.run.columns:
        if column.attr in fields:
            updates.update(column.to_db(fields[column.attr], None))
    try:
        with ledger.db.atomic():
            queued = Run.select(Run.status).where(Run.id == run_id).scalar() == RunStatus.QUEUED.value
            superseded = (
                Event.update(superseded=True)
                .where((Event.run == run_id) & (Event.step > from_step) & ~Event.superseded)
                .execute()
            )
            now = time.time()
            Run.update(
                status=RunStatus.RUNNING.value,
                ended_at=None,
                error=None,
                heartbeat_at=now,
                opened_at=now,
                last_step=from_step,
                host=socket.gethostname(),
                pid=os.getpid(),
                interrupted=False,
                queue_position=None,
                **updates,
                **({"started_at": now} if queued else {}),  # a queued run starts now; it was submitted earlier
            ).where(Run.id == run_id).execute()
    except OperationalError as err:
        raise LedgerError(f"{ledger.path}: cannot write to the ledger: {err}") from err
    return superseded


class LedgerWriter:
    """Owns the write side of one run. `submit` is all the training thread ever calls."""

    def __init__(
        self,
        ledger: Ledger,
        run_id: str,
        *,
        flush_interval: float = FLUSH_INTERVAL_S,
        on_request: Callable[[ControlRequest], None] | None = None,
    ) -> None:
        """`on_request` is handed each new control request for the run (from this writer's thread)."""
        self._ledger = ledger
        self._run_id = run_id
        self._flush_interval = flush_interval
        self._on_request = on_request
        self._last_request = 0
        self._queue: queue.SimpleQueue[StepEvent | _StatusChange | _PhaseChange] = queue.SimpleQueue()
        self._texts = TextInterner(ledger.tables.text)
        self._thread = threading.Thread(target=self._loop, name="twotier-ledger", daemon=True)
        self._failure: str | None = None
        self._locked_since: float | None = None
        self._closing = threading.Event()
        self._reserve = _hold_reserve(ledger.path.with_name(f"{ledger.path.name}.{run_id}.reserve"))
        self._thread.start()

    def submit(self, event: StepEvent) -> None:
        """Queue one event; returns at once (a queue put, no I/O)."""
        self._queue.put(event)

    def set_status(self, status: RunStatus, done: tuple[int, ...] = (), *, step: int | None = None) -> None:
        """Record the run's status (reached at `step`), and that the control requests `done` are carried out."""
        self._queue.put(_StatusChange(status, done=done, step=step))

    def set_phase(self, phase: dict[str, Any] | None) -> None:
        """What the run does before training (see `RunInfo.phase`); a later phase replaces an earlier one."""
        self._queue.put(_PhaseChange(phase))

    def training_began(self) -> None:
        """The loading phases are over: clear the phase and record when training began."""
        self._queue.put(_PhaseChange(None, time.time()))

    @property
    def failure(self) -> str | None:
        """Why the writer stopped for good (a full disk, a damaged file), or None while it writes."""
        return self._failure

    def close(
        self,
        status: RunStatus,
        error: str | None = None,
        timeout: float | None = 60.0,
        *,
        done: tuple[int, ...] = (),
        interrupted: bool = False,
        step: int | None = None,
    ) -> None:
        """Write everything queued, then the final status (carrying out the requests `done`; `interrupted`: a
        signal ended the run, so a daemon may take it up again; `step`: the step it ended at), and stop the
        thread."""
        self._queue.put(_StatusChange(status, error, final=True, done=done, interrupted=interrupted, step=step))
        self._closing.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise LedgerError(f"{self._ledger.path}: the ledger writer did not finish within {timeout} s")
        if self._failure is not None:
            raise LedgerError(f"{self._ledger.path}: writing the ledger failed: {self._failure}")

    def _loop(self) -> None:
        try:
            self._write_until_final()
        finally:
            self._release_reserve()
            self._ledger.db.close()  # this thread's connection: its last checkpoint, its file handles

    def _write_until_final(self) -> None:
        pending = _Pending()
        last_beat = 0.0
        backlog = False
        while True:
            # Sleep, then take what came: blocking on the queue instead would make every put wake this
            # thread, and the training thread would then wait for the interpreter lock inside `submit`.
            if not backlog:
                self._closing.wait(self._flush_interval)
            backlog = self._drain(pending)
            self._poll_requests()
            now = time.time()
            if (
                not pending.events
                and pending.status is None
                and pending.phase is None
                and now - last_beat < HEARTBEAT_S
            ):
                continue
            try:
                try:
                    self._write(pending, now)
                except DatabaseError as err:
                    raise _first_error(err) from None
            except OperationalError as err:
                if not _is_busy(err):
                    self._give_up(err)
                    return
                # Another process holds the write lock past the busy timeout: keep everything and try
                # again; training goes on, since it only ever puts on the queue.
                self._texts.forget()
                self._note_lock(err, len(pending.events))
                continue
            except BaseException as err:  # noqa: BLE001 - recorded and reported to close(); the thread must end
                self._give_up(err)
                return
            self._note_unlocked(len(pending.events))
            last_beat = now
            done = pending.status is not None and pending.status.final
            pending = _Pending()
            if done:
                return

    def _poll_requests(self) -> None:
        """Hand the run the control requests made since the last poll; a locked or busy ledger waits a poll."""
        if self._on_request is None or self._closing.is_set():
            return
        try:
            requests = pending_requests(self._ledger, self._run_id, self._last_request)
        except DatabaseError:
            return
        for request in requests:
            self._last_request = max(self._last_request, request.id or 0)
            self._on_request(request)

    def _note_lock(self, err: OperationalError, waiting: int) -> None:
        if self._locked_since is None:
            self._locked_since = time.monotonic()
            log.warning(
                "ledger %s is locked by another process (%s); training goes on, %d events wait in memory "
                "and are written when the lock goes",
                self._ledger.path,
                err,
                waiting + self._queue.qsize(),
            )

    def _note_unlocked(self, written: int) -> None:
        if self._locked_since is not None:
            log.warning(
                "ledger %s: the lock went after %.1f s; writing the %d events that waited",
                self._ledger.path,
                time.monotonic() - self._locked_since,
                written + self._queue.qsize(),
            )
            self._locked_since = None

    def _give_up(self, err: BaseException) -> None:
        """A write failed for a reason waiting cannot cure: the batch was rolled back; mark the run failed."""
        self._failure = f"{type(err).__name__}: {err}"
        self._texts.forget()
        log.error("ledger %s: cannot write the run's events (%s); the run stops", self._ledger.path, self._failure)
        self._release_reserve()  # on a full disk, the room to record why
        Run = self._ledger.tables.run.model
        try:
            try:
                with self._ledger.db.atomic():
                    Run.update(
                        status=RunStatus.FAILED.value,
                        error=f"ledger write failed: {self._failure}",
                        ended_at=time.time(),
                    ).where(Run.id == self._run_id).execute()
            except DatabaseError as err:
                raise _first_error(err) from None
        except DatabaseError as second:
            log.error("ledger %s: could not even mark the run failed: %s", self._ledger.path, second)

    def _release_reserve(self) -> None:
        if self._reserve is not None:
            self._reserve.unlink(missing_ok=True)
            self._reserve = None

    def _drain(self, pending: _Pending) -> bool:
        """Take what is queued, up to one batch; True when more is waiting. A later status replaces an
        earlier one (the final comes last). One transaction stays small, so WAL checkpoints keep up."""
        while len(pending.events) < MAX_BATCH:
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                return False
            if isinstance(message, _StatusChange):
                carried = pending.status.done if pending.status is not None else ()
                step = message.step if message.step is not None else pending.status.step if pending.status else None
                pending.status = replace(message, done=carried + message.done, step=step)
            elif isinstance(message, _PhaseChange):
                # A later phase replaces an earlier one, but never drops when training began.
                began = message.trained_from or (pending.phase.trained_from if pending.phase else None)
                pending.phase = _PhaseChange(message.phase, began)
            else:
                pending.events.append(message)
        return True

    def _write(self, pending: _Pending, now: float) -> None:
        Run = self._ledger.tables.run.model
        with self._ledger.db.atomic():
            if pending.events:
                self._insert_events(pending.events)
            update: dict[Any, Any] = {Run.heartbeat_at: now}
            if pending.events:
                update[Run.last_step] = max(event.step for event in pending.events)
            if pending.phase is not None:
                update[Run.phase] = (
                    None if pending.phase.phase is None else json.dumps(pending.phase.phase, sort_keys=True)
                )
                if pending.phase.trained_from is not None:
                    update[Run.trained_from] = pending.phase.trained_from
            if pending.status is not None:
                update[Run.status] = pending.status.status.value
                if pending.status.step is not None:  # a pause or stop acts a few steps after the last fast log
                    update[Run.last_step] = max(update.get(Run.last_step, 0), pending.status.step)
                if pending.status.final:
                    update[Run.ended_at] = now
                    update[Run.error] = pending.status.error
                    update[Run.phase] = None  # a run that ended while loading does no more of it
                    update[Run.interrupted] = pending.status.interrupted
                if pending.status.done:
                    Request = self._ledger.tables.request.model
                    Request.update(done_at=now).where(Request.id.in_(pending.status.done)).execute()
            Run.update(update).where(Run.id == self._run_id).execute()

    def _insert_events(self, events: list[StepEvent]) -> None:
        tables = self._ledger.tables
        texts = {storable(text) for event in events for text in tables.event.texts(event)}
        texts.update(storable(text) for event in events for probe in event.probes for text in tables.probe.texts(probe))
        ids = self._texts.ids(texts)

        def text_id(text: str) -> int:
            return ids[storable(text)]

        plain: list[dict[str, Any]] = []
        for event in events:
            if not event.probes:
                plain.append(tables.event.row(event, text_id))
                continue
            # Rows keep the events' order (readers tail by id): flush the fast logs before a full eval.
            self._insert_rows(plain)
            plain = []
            row_id = tables.event.model.insert(**tables.event.row(event, text_id)).execute()
            probe_rows = [
                tables.probe.row(probe, text_id, event=row_id, run=event.run_id, step=event.step)
                for probe in event.probes
            ]
            tables.probe.model.insert_many(probe_rows).execute()
        self._insert_rows(plain)

    def _insert_rows(self, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), ROWS_PER_INSERT):
            self._ledger.tables.event.model.insert_many(rows[start : start + ROWS_PER_INSERT]).execute()


def _hold_reserve(path: Path) -> Path | None:
    """Space taken beside the ledger while a run writes: freed when the disk fills up, it leaves room
    to record that the run failed and why. None where even that cannot be had."""
    try:
        path.write_bytes(bytes(RESERVE_BYTES))
    except OSError:
        path.unlink(missing_ok=True)
        return None
    return path


def _first_error(err: DatabaseError) -> DatabaseError:
    """The error that failed the transaction: SQLite rolls back on its own after e.g. a full disk,
    and peewee's own ROLLBACK then fails with "no transaction is active", hiding the reason."""
    cause: BaseException | None = err
    while cause is not None and "no transaction is active" in str(cause):
        cause = cause.__context__
    return cause if isinstance(cause, DatabaseError) else err


def _is_busy(err: OperationalError) -> bool:
    message = str(err).lower()
    return "locked" in message or "busy" in message
