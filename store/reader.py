"""Read-only questions to a ledger: the runs, and a run's events past a high-water mark.

Readers open the file read-only and hold no transaction between calls, so they never block
the writer nor starve WAL checkpoints.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from peewee import JOIN, DatabaseError, fn

from .db import Ledger, open_ledger
from .errors import LedgerError
from .records import Kind, ProbeResult, RunInfo, RunStatus, StepEvent

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

EVENT_FIELDS = (
    "loss", "prompt_tokens", "golden_tokens", "batch_loss", "learning_rate", "grad_norm",
    "tokens_per_s", "epoch", "output_tokens", "match", "train_loss_mean", "val_loss", "gap",
    "gap_ok", "heldout_accuracy", "heldout_token_accuracy", "eval_seconds", "eval_error",
)  # fmt: skip


@dataclass(frozen=True)
class Bucketed:
    """A series averaged in buckets; `per_point` is how many values a typical point stands for."""

    points: list[float]
    per_point: int


@dataclass(frozen=True)
class LossHistory:
    train: Bucketed
    val: Bucketed


class LedgerReader:
    """A read-only view of one ledger file."""

    def __init__(self, path: str | Path) -> None:
        self.ledger: Ledger = open_ledger(path, readonly=True)

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
        Run = self.ledger.tables.run
        query = Run.select().order_by(Run.started_at.desc())
        if status is not None:
            query = query.where(Run.status == status.value)
        return [_run_info(row) for row in query.dicts()]

    @_damage_is_a_ledger_error
    def run(self, ref: str) -> RunInfo:
        """A run by id, unique id prefix, name, or `latest`."""
        Run = self.ledger.tables.run
        if ref == "latest":
            row = Run.select().order_by(Run.started_at.desc()).limit(1).dicts().first()
            if row is None:
                raise LedgerError(f"{self.path}: the ledger has no runs yet")
            return _run_info(row)
        rows = list(Run.select().where(Run.id.startswith(ref) | (Run.name == ref)).dicts())
        exact = [row for row in rows if row["id"] == ref]
        if exact:
            return _run_info(exact[0])
        if len(rows) == 1:
            return _run_info(rows[0])
        if not rows:
            raise LedgerError(f"{self.path}: no run matches '{ref}' (try `twotier ledger runs`)")
        names = ", ".join(row["id"] for row in rows[:5])
        raise LedgerError(f"{self.path}: '{ref}' matches {len(rows)} runs ({names}); give more of the id")

    @_damage_is_a_ledger_error
    def events_after(
        self, run_id: str, after_id: int = 0, limit: int = 500, *, with_probes: bool = False
    ) -> list[StepEvent]:
        """The run's events with row id above `after_id`, oldest first: the tail read."""
        Event = self.ledger.tables.event
        query = self._event_query().where((Event.run == run_id) & (Event.id > after_id) & ~Event.superseded)
        events = [_event(row) for row in query.order_by(Event.id).limit(limit).dicts()]
        if with_probes:
            return [self._attach_probes(event) for event in events]
        return events

    @_damage_is_a_ledger_error
    def count_events(self, run_id: str) -> int:
        Event = self.ledger.tables.event
        return Event.select().where((Event.run == run_id) & ~Event.superseded).count()

    @_damage_is_a_ledger_error
    def recent_events(self, run_id: str, count: int) -> list[StepEvent]:
        """The run's last `count` events, oldest first: where a viewer of a long run starts."""
        Event = self.ledger.tables.event
        query = self._event_query().where((Event.run == run_id) & ~Event.superseded)
        return [_event(row) for row in reversed(list(query.order_by(Event.id.desc()).limit(count).dicts()))]

    @_damage_is_a_ledger_error
    def full_evals(self, run_id: str, last: int, before_id: int) -> list[StepEvent]:
        """The run's last `last` full evals with row id below `before_id`, oldest first."""
        Event = self.ledger.tables.event
        query = self._event_query().where(
            (Event.run == run_id) & ~Event.superseded & (Event.kind == Kind.FULL.value) & (Event.id < before_id)
        )
        return [_event(row) for row in reversed(list(query.order_by(Event.id.desc()).limit(last).dicts()))]

    @_damage_is_a_ledger_error
    def loss_history(self, run_id: str, points: int, before_id: int) -> LossHistory:
        """Batch and validation losses of events below `before_id`, averaged in SQL into at most `points`
        buckets of steps: a long run's curve in one indexed scan, without reading its events."""
        Event = self.ledger.tables.event
        earlier = (Event.run == run_id) & ~Event.superseded & (Event.id < before_id)
        last_step = Event.select(fn.MAX(Event.step)).where(earlier).scalar() or 0
        width = max(1, -(-(last_step + 1) // points))
        return LossHistory(
            train=self._bucketed(Event.batch_loss, earlier, width),
            val=self._bucketed(Event.val_loss, earlier & (Event.kind == Kind.FULL.value), width),
        )

    def _bucketed(self, column: Any, where: Any, width: int) -> Bucketed:
        Event = self.ledger.tables.event
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

    def iter_events(self, run_id: str | None = None, kind: Kind | None = None, chunk: int = 1000) -> Iterator[StepEvent]:
        """All events of one run (or all runs), in id order, read in chunks."""
        Event = self.ledger.tables.event
        after = 0
        while True:
            query = self._event_query().where((Event.id > after) & ~Event.superseded)
            if run_id is not None:
                query = query.where(Event.run == run_id)
            if kind is not None:
                query = query.where(Event.kind == kind.value)
            rows = self._rows(query.order_by(Event.id).limit(chunk))
            if not rows:
                return
            for row in rows:
                yield _event(row)
            after = rows[-1]["id"]

    @_damage_is_a_ledger_error
    def probes(self, event_id: int) -> tuple[ProbeResult, ...]:
        """The probe set's answers at one full eval."""
        tables = self.ledger.tables
        Probe, Text = tables.probe, tables.text
        prompt, golden, output = Text.alias(), Text.alias(), Text.alias()
        query = (
            Probe.select(Probe.probe_id, Probe.match, Probe.loss,
                         prompt.body.alias("prompt"), golden.body.alias("golden"), output.body.alias("output"))
            .join_from(Probe, prompt, on=(Probe.prompt == prompt.id))
            .join_from(Probe, golden, on=(Probe.golden == golden.id))
            .join_from(Probe, output, on=(Probe.output == output.id))
            .where(Probe.event == event_id)
            .order_by(Probe.probe_id)
        )  # fmt: skip
        return tuple(
            ProbeResult(row["probe_id"], row["prompt"], row["golden"], row["output"], bool(row["match"]), row["loss"])
            for row in query.dicts()
        )

    def run_status(self, run: RunInfo, now: float | None = None) -> str:
        """The status to show: a live run whose heartbeat stopped is `stale` (its process died)."""
        return "stale" if run.is_stale(now or time.time(), STALE_AFTER_S) else run.status.value

    def _attach_probes(self, event: StepEvent) -> StepEvent:
        if not event.is_full or event.id is None:
            return event
        return replace(event, probes=self.probes(event.id))

    @_damage_is_a_ledger_error
    def _rows(self, query: Any) -> list[dict[str, Any]]:
        return list(query.dicts())

    def _event_query(self) -> Any:
        tables = self.ledger.tables
        Event, Text = tables.event, tables.text
        prompt, golden, output = Text.alias(), Text.alias(), Text.alias()
        return (
            Event.select(Event, prompt.body.alias("prompt_text"), golden.body.alias("golden_text"),
                         output.body.alias("output_text"))
            .join_from(Event, prompt, on=(Event.prompt == prompt.id))
            .join_from(Event, golden, on=(Event.golden == golden.id))
            .join_from(Event, output, JOIN.LEFT_OUTER, on=(Event.output == output.id))
        )  # fmt: skip


def _run_info(row: dict[str, Any]) -> RunInfo:
    return RunInfo(
        id=row["id"],
        name=row["name"],
        status=RunStatus(row["status"]),
        model=row["model"],
        dataset=row["dataset"],
        config=json.loads(row["config_json"]),
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        ended_at=row["ended_at"],
        max_steps=row["max_steps"],
        last_step=row["last_step"],
        error=row["error"],
    )


def _event(row: dict[str, Any]) -> StepEvent:
    values = {name: row[name] for name in EVENT_FIELDS}
    if row["loss_nonfinite"]:
        values["loss"] = float("nan")
    for flag in ("match", "gap_ok"):
        if values[flag] is not None:
            values[flag] = bool(values[flag])
    return StepEvent(
        id=row["id"],
        run_id=row["run"],
        step=row["step"],
        kind=Kind(row["kind"]),
        wall_time=row["wall_time"],
        elapsed_s=row["elapsed_s"],
        prompt=row["prompt_text"],
        golden=row["golden_text"],
        model_output=row["output_text"],
        **values,
    )
