"""Every read question a viewer or a query command asks of a ledger, answered in one place.

Readers open the file read-only and hold no transaction between calls, so they never block
the writer nor starve WAL checkpoints.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from peewee import DatabaseError, fn

from .db import Ledger, open_ledger
from .errors import LedgerError, RunNotFound
from .records import ControlRequest, Kind, ProbeResult, RunInfo, RunStatus, StepEvent

STALE_AFTER_S = 30.0
Method = TypeVar("Method", bound=Callable[..., Any])


def _damage_is_a_ledger_error(method: Method) -> Method:
    """SQLite finds damage in a page only when it reads it, mid-query: say so in one line, naming the file."""

    @functools.wraps(method)
    def read(self: LedgerReader, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (DatabaseError, sqlite3.DatabaseError) as err:  # peewee wraps execute, not the row fetch
            raise LedgerError(f"{self.path}: the ledger is damaged or unreadable: {err}") from err

    return read  # type: ignore[return-value]


@dataclass(frozen=True)
class Bucketed:
    """A series averaged in buckets; `per_point` is how many values a typical point stands for."""

    points: list[float]
    per_point: int


@dataclass(frozen=True)
class LossHistory:
    train: Bucketed
    val: Bucketed


def pending_requests(ledger: Ledger, run_id: str, after_id: int = 0) -> list[ControlRequest]:
    """The run's control requests not yet done, with ids above `after_id`, oldest first. The run's writer
    asks this on its own connection every flush; viewers ask `LedgerReader.pending_requests`."""
    table = ledger.tables.request
    Request = table.model
    query = Request.select().where((Request.run == run_id) & Request.done_at.is_null() & (Request.id > after_id))
    return [table.record_of(row) for row in query.order_by(Request.id).dicts()]


class LedgerReader:
    """A read-only view of one ledger file: every question a viewer or a query command asks of it.

    Each method is one indexed query (or a chunked scan for whole-run reads); none holds a
    transaction open between calls.
    """

    def __init__(self, path: str | Path) -> None:
        self.ledger: Ledger = open_ledger(path, readonly=True)
        self.tables = self.ledger.tables

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.ledger.path

    @_damage_is_a_ledger_error
    def runs(self, status: RunStatus | None = None) -> list[RunInfo]:
        """Every run, newest first."""
        Run = self.tables.run.model
        query = Run.select().order_by(Run.started_at.desc())
        if status is not None:
            query = query.where(Run.status == status.value)
        return [self.tables.run.record_of(row) for row in query.dicts()]

    @_damage_is_a_ledger_error
    def run(self, ref: str) -> RunInfo:
        """A run by id, unique id prefix, name, or `latest`: the run a process took up last (started or
        resumed; queued and cancelled runs never ran)."""
        Run = self.tables.run.model
        if ref == "latest":
            never_ran = (RunStatus.QUEUED.value, RunStatus.CANCELLED.value)
            opened = fn.COALESCE(Run.opened_at, Run.started_at)
            query = Run.select().where(Run.status.not_in(never_ran)).order_by(opened.desc(), Run.started_at.desc())
            row = query.limit(1).dicts().first()
            if row is None:
                raise RunNotFound(f"{self.path}: the ledger has no runs yet")
            return self.tables.run.record_of(row)
        rows = list(Run.select().where(Run.id.startswith(ref) | (Run.name == ref)).dicts())
        exact = [row for row in rows if row["id"] == ref]
        if exact or len(rows) == 1:
            return self.tables.run.record_of((exact or rows)[0])
        if not rows:
            raise RunNotFound(f"{self.path}: no run matches '{ref}' (try `twotier ledger runs`)")
        names = ", ".join(row["id"] for row in rows[:5])
        raise LedgerError(f"{self.path}: '{ref}' matches {len(rows)} runs ({names}); give more of the id")

    def run_status(self, run: RunInfo, now: float | None = None) -> str:
        """The status to show: a live run whose heartbeat stopped is `stale` (its process died)."""
        return "stale" if run.is_stale(now or time.time(), STALE_AFTER_S) else run.status.value

    @_damage_is_a_ledger_error
    def event(self, event_id: int, *, with_probes: bool = False) -> StepEvent:
        """One event by its row id (superseded or not)."""
        Event = self.tables.event.model
        rows = list(self._events().where(Event.id == event_id).dicts())
        if not rows:
            raise LedgerError(f"{self.path}: no event {event_id}")
        event = self.tables.event.record_of(rows[0])
        return self._with_probes(event) if with_probes else event

    @_damage_is_a_ledger_error
    def events_after(
        self, run_id: str, after_id: int = 0, limit: int = 500, *, with_probes: bool = False
    ) -> list[StepEvent]:
        """The run's events with row id above `after_id`, oldest first: the tail read."""
        Event = self.tables.event.model
        query = self._events().where((Event.run == run_id) & (Event.id > after_id) & ~Event.superseded)
        events = [self.tables.event.record_of(row) for row in query.order_by(Event.id).limit(limit).dicts()]
        return [self._with_probes(event) for event in events] if with_probes else events

    @_damage_is_a_ledger_error
    def count_events(self, run_id: str) -> int:
        Event = self.tables.event.model
        return Event.select().where((Event.run == run_id) & ~Event.superseded).count()

    @_damage_is_a_ledger_error
    def recent_events(self, run_id: str, count: int) -> list[StepEvent]:
        """The run's last `count` events, oldest first: where a viewer of a long run starts."""
        Event = self.tables.event.model
        query = self._events().where((Event.run == run_id) & ~Event.superseded).order_by(Event.id.desc())
        return [self.tables.event.record_of(row) for row in reversed(list(query.limit(count).dicts()))]

    def full_evals(
        self, run_id: str | None, *, last: int | None = None, before_id: int | None = None
    ) -> list[StepEvent]:
        """The run's full evals (every run's, for None), oldest first; `last` keeps only the newest that
        many, and `before_id` only those with a row id below it."""
        if last is None and before_id is None:
            return list(self.iter_events(run_id, kind=Kind.FULL))
        Event = self.tables.event.model
        where = ~Event.superseded & (Event.kind == Kind.FULL.value)
        if run_id is not None:
            where &= Event.run == run_id
        if before_id is not None:
            where &= Event.id < before_id
        query = self._events().where(where).order_by(Event.id.desc())
        if last is not None:
            query = query.limit(last)
        return [self.tables.event.record_of(row) for row in reversed(self._rows(query))]

    @_damage_is_a_ledger_error
    def last_figures(self, run_id: str) -> tuple[StepEvent | None, StepEvent | None]:
        """The run's last event and its last full eval: a run's final figures in two indexed reads."""
        Event = self.tables.event.model
        current = (Event.run == run_id) & ~Event.superseded  # a resumed run logged those steps again
        last = self._events().where(current).order_by(Event.id.desc()).limit(1).dicts().first()
        full = self._events().where(current & (Event.kind == Kind.FULL.value)).order_by(Event.id.desc())
        full_row = full.limit(1).dicts().first()
        records = self.tables.event.record_of
        return (None if last is None else records(last)), (None if full_row is None else records(full_row))

    @_damage_is_a_ledger_error
    def pending_requests(self, run_id: str) -> list[ControlRequest]:
        """The run's control requests it has not acted on yet, oldest first."""
        return pending_requests(self.ledger, run_id)

    @_damage_is_a_ledger_error
    def request_done(self, request_id: int) -> bool:
        Request = self.tables.request.model
        return Request.select().where((Request.id == request_id) & Request.done_at.is_null(False)).exists()

    @_damage_is_a_ledger_error
    def loss_history(self, run_id: str, points: int, before_id: int) -> LossHistory:
        """Batch and validation losses of events below `before_id`, averaged in SQL into at most `points`
        buckets of steps: a long run's curve in one indexed scan, without reading its events."""
        Event = self.tables.event.model
        earlier = (Event.run == run_id) & ~Event.superseded & (Event.id < before_id)
        last_step = Event.select(fn.MAX(Event.step)).where(earlier).scalar() or 0
        width = max(1, -(-(last_step + 1) // points))
        return LossHistory(
            train=self._bucketed(Event.batch_loss, earlier, width),
            val=self._bucketed(Event.val_loss, earlier & (Event.kind == Kind.FULL.value), width),
        )

    def _bucketed(self, column: Any, where: Any, width: int) -> Bucketed:
        Event = self.tables.event.model
        bucket = Event.step / width  # integer division in SQLite: both are integers
        rows = list(
            Event.select(fn.AVG(column), fn.COUNT(column))
            .where(where & column.is_null(False))
            .group_by(bucket)
            .order_by(bucket)
            .tuples()
        )
        counts = sorted(count for _, count in rows)
        return Bucketed([mean for mean, _ in rows], counts[len(counts) // 2] if counts else 1)

    def iter_events(
        self, run_id: str | None = None, kind: Kind | None = None, chunk: int = 1000
    ) -> Iterator[StepEvent]:
        """All events of one run (or all runs), in id order, read in chunks."""
        Event = self.tables.event.model
        after = 0
        while True:
            query = self._events().where((Event.id > after) & ~Event.superseded)
            if run_id is not None:
                query = query.where(Event.run == run_id)
            if kind is not None:
                query = query.where(Event.kind == kind.value)
            rows = self._rows(query.order_by(Event.id).limit(chunk))
            if not rows:
                return
            for row in rows:
                yield self.tables.event.record_of(row)
            after = rows[-1]["id"]

    @_damage_is_a_ledger_error
    def probes(self, event_id: int) -> tuple[ProbeResult, ...]:
        """The probe set's answers at one full eval."""
        table = self.tables.probe
        query = table.select(self.tables.text).where(table.model.event == event_id).order_by(table.model.probe_id)
        return tuple(table.record_of(row) for row in query.dicts())

    @_damage_is_a_ledger_error
    def probe_answers(self, run_id: str, probe_id: int) -> list[tuple[int, ProbeResult]]:
        """One probe's answers at each full eval of the run, as (step, answer) in step order."""
        table, Event = self.tables.probe, self.tables.event.model
        Probe = table.model
        query = (
            table.select(self.tables.text)
            .join_from(Probe, Event, on=(Probe.event == Event.id))
            .where((Probe.run == run_id) & (Probe.probe_id == probe_id) & ~Event.superseded)
            .order_by(Probe.step)
        )
        return [(row["step"], table.record_of(row)) for row in query.dicts()]

    def _with_probes(self, event: StepEvent) -> StepEvent:
        if not event.is_full or event.id is None:
            return event
        return replace(event, probes=self.probes(event.id))

    @_damage_is_a_ledger_error
    def _rows(self, query: Any) -> list[dict[str, Any]]:
        return list(query.dicts())

    def _events(self) -> Any:
        return self.tables.event.select(self.tables.text)
