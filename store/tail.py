"""Incremental reads of one run from a ledger: each poll returns only what arrived since the last one.

A poll costs one run lookup and one indexed range read past the high-water mark, so its cost follows
what is new, not the length of the run. Use a `Tail` from one thread (peewee connects per thread).
Errors reach the caller (a damaged ledger is one `LedgerError`); only a ledger still being created
and a run not yet recorded read as `waiting`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import LedgerNotReady, RunNotFound
from .reader import LedgerReader, LossHistory
from .records import ControlRequest, RunInfo, StepEvent

CHUNK = 2000
WAITING = "waiting"
HISTORY_POINTS = 256  # the loss chart's own resolution
OPENING_EVALS = 1000  # full-eval rows a long run opens with


@dataclass(frozen=True)
class Opening:
    """How a long run is first shown without reading it whole: its earlier losses averaged in SQL,
    and its last full evals; the poll's events are then the run's most recent ones."""

    history: LossHistory
    evals: list[StepEvent]


@dataclass(frozen=True)
class Poll:
    """What one poll found: the run as the ledger has it now and the events past the last poll."""

    run: RunInfo | None
    status: str
    events: list[StepEvent] = field(default_factory=list)
    more: bool = False
    opening: Opening | None = None
    # Following the newest run: the run shown before this poll found a newer one (None otherwise).
    switched_from: RunInfo | None = None
    # Control requests the run has not acted on yet (a pause asked from another terminal...).
    pending: list[ControlRequest] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        """The run has its final status and nothing is left to read: later polls find nothing new."""
        return self.run is not None and not self.run.status.is_live and not self.more


class Tail:
    """Follows one run of the ledger at `path` from its high-water mark: `run_ref` (an id, a name), or
    with `run_ref=None` the newest run, moving on to each newer run as it starts.

    Only the full evals among the last `probes_for_last` events of a poll get their probe set: the
    app draws no more than those, and reading the probes of every eval of a long run would dominate.
    """

    def __init__(
        self,
        path: Path,
        run_ref: str | None,
        *,
        clock: Callable[[], float] = time.time,
        chunk: int = CHUNK,
        probes_for_last: int = CHUNK,
    ) -> None:
        self.path = path
        self.run_ref = run_ref
        self.last_id = 0
        self._clock = clock
        self._chunk = chunk
        self._probes_for_last = probes_for_last
        self._reader: LedgerReader | None = None
        self._run: RunInfo | None = None

    @property
    def follows_newest(self) -> bool:
        return self.run_ref is None

    def poll(self) -> Poll:
        """Read what is new. While the ledger or the run does not exist yet, the status is `waiting`."""
        reader = self._open()
        run = self._resolve(reader) if reader is not None else None
        if reader is None or run is None:
            return Poll(None, WAITING)
        switched_from = None
        if self._run is not None and run.id != self._run.id:
            switched_from, self.last_id = self._run, 0
        self._run = run
        opening = None
        if self.last_id == 0 and reader.count_events(run.id) > self._chunk:
            events = reader.recent_events(run.id, self._probes_for_last)
            first_id = events[0].id or 0
            opening = Opening(
                reader.loss_history(run.id, HISTORY_POINTS, first_id),
                reader.full_evals(run.id, last=OPENING_EVALS, before_id=first_id),
            )
        else:
            events = reader.events_after(run.id, self.last_id, self._chunk)
        if events and events[-1].id is not None:
            self.last_id = events[-1].id
        more = opening is None and len(events) == self._chunk
        first = max(0, len(events) - self._probes_for_last)
        for index in range(first, len(events)):
            event = events[index]
            if event.is_full and event.id is not None:
                events[index] = replace(event, probes=reader.probes(event.id))
        pending = reader.pending_requests(run.id) if run.status.is_live else []
        return Poll(run, reader.run_status(run, self._clock()), events, more, opening, switched_from, pending)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _open(self) -> LedgerReader | None:
        # A run that trains in this process creates its ledger once the model is loaded: until then, wait.
        if self._reader is None and self.path.exists():
            try:
                self._reader = LedgerReader(self.path)
            except LedgerNotReady:
                return None
        return self._reader

    def _resolve(self, reader: LedgerReader) -> RunInfo | None:
        wanted = "latest" if self.follows_newest else (self._run.id if self._run is not None else self.run_ref)
        try:
            return reader.run(wanted or "latest")
        except RunNotFound:
            return None
