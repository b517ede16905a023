"""What the ledger commands compute from the reader's answers: a summary per run, curves, probe flips, comparisons, SQL.

Everything here reads through a LedgerReader (a read-only connection), so no question can change a ledger.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peewee import DatabaseError

from .errors import LedgerError, first_line
from .reader import LedgerReader
from .records import RunInfo, StepEvent

# PRAGMAs that only describe the schema; every other statement but a read is refused.
_SCHEMA_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


@dataclass(frozen=True)
class RunSummary:
    """One line of `twotier ledger runs`: the run and its final figures (None where never measured)."""

    run: RunInfo
    status: str
    duration_s: float
    final_train_loss: float | None
    final_val_loss: float | None
    final_probe_accuracy: float | None

    def record(self) -> dict[str, Any]:
        """A flat dict for exports and notebooks, keyed by RUN_COLUMNS."""
        run = self.run
        values = (
            run.id,
            run.name,
            self.status,
            run.model,
            run.dataset,
            run.last_step,
            run.max_steps,
            run.started_at,
            run.ended_at,
            self.duration_s,
            self.final_train_loss,
            self.final_val_loss,
            self.final_probe_accuracy,
            run.error,
            run.config,
        )
        return dict(zip(RUN_COLUMNS, values, strict=True))


RUN_COLUMNS = (
    "run_id",
    "name",
    "status",
    "model",
    "dataset",
    "steps",
    "max_steps",
    "started_at",
    "ended_at",
    "duration_s",
    "final_train_loss",
    "final_val_loss",
    "final_probe_accuracy",
    "error",
    "config",
)


@dataclass(frozen=True)
class Curves:
    """A run's curves against step: the batch loss at every logged step, and the full-eval figures."""

    run: RunInfo
    steps: list[int]
    train_loss: list[float]
    eval_steps: list[int]
    val_loss: list[float]
    probe_accuracy: list[float]
    probe_score: list[float]


@dataclass(frozen=True)
class ProbeChange:
    """A probe example whose MATCH changed (or never came): at which step, and what the model said then."""

    probe_id: int
    step: int
    prompt: str
    golden: str | None
    model_output: str


@dataclass(frozen=True)
class ProbeHistory:
    """Probe examples sorted by how their MATCH went across a run's full evals, in step order."""

    never_matched: list[ProbeChange] = field(default_factory=list)
    flipped_to_match: list[ProbeChange] = field(default_factory=list)
    regressed: list[ProbeChange] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """Several runs side by side: their full evals by step and the config keys whose values differ."""

    runs: list[RunInfo]
    steps: list[int]
    evals: dict[str, dict[int, StepEvent]]
    config_diff: dict[str, list[Any]]


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def run_summaries(reader: LedgerReader, status: str | None = None, now: float | None = None) -> list[RunSummary]:
    """Every run, newest first; `status` filters on the shown status (so `stale` is a status too)."""
    summaries = [summarize(reader, run, now) for run in reader.runs()]
    return [s for s in summaries if status is None or s.status == status]


def summarize(reader: LedgerReader, run: RunInfo, now: float | None = None) -> RunSummary:
    last, full = reader.last_figures(run.id)
    return RunSummary(
        run=run,
        status=reader.run_status(run, now),
        duration_s=(run.ended_at or run.heartbeat_at) - run.started_at,
        final_train_loss=None if last is None else last.batch_loss,
        final_val_loss=None if full is None else full.val_loss,
        final_probe_accuracy=None if full is None else full.probe_accuracy,
    )


def curves(reader: LedgerReader, run: RunInfo) -> Curves:
    """Not-finite losses are kept (as NaN) so that a plot shows where a run diverged."""
    steps, train, eval_steps, val, accuracy, score = [], [], [], [], [], []
    for event in reader.iter_events(run.id):
        steps.append(event.step)
        train.append(_number(event.batch_loss))
        if event.is_full:
            eval_steps.append(event.step)
            val.append(_number(event.val_loss))
            accuracy.append(_number(event.probe_accuracy))
            score.append(_number(event.probe_score))
    return Curves(run, steps, train, eval_steps, val, accuracy, score)


@dataclass(frozen=True)
class LoggedMetric:
    """One key the trainer logged beside the loss (TRL's entropy, num_tokens...): its first and last value."""

    key: str
    first_step: int | None
    first: float | None
    last_step: int | None
    last: float | None


def logged_metrics(reader: LedgerReader, run_id: str) -> list[LoggedMetric]:
    """Every key in the run's events' `metrics`, at its first and last event (two indexed reads)."""
    firsts = reader.events_after(run_id, 0, limit=1)
    first, last = (firsts[0] if firsts else None), reader.last_figures(run_id)[0]
    keys = sorted(set(first.metrics if first else {}) | set(last.metrics if last else {}))
    return [
        LoggedMetric(
            key,
            first.step if first and key in first.metrics else None,
            first.metrics.get(key) if first else None,
            last.step if last and key in last.metrics else None,
            last.metrics.get(key) if last else None,
        )
        for key in keys
    ]


def probe_history(reader: LedgerReader, run_id: str) -> ProbeHistory:
    """Flips and regressions are changes between one full eval and the next of the same probe example."""
    history = ProbeHistory()
    previous: dict[int, bool] = {}
    ever_matched: set[int] = set()
    last_seen: dict[int, ProbeChange] = {}
    for event in reader.full_evals(run_id):
        assert event.id is not None
        for probe in reader.probes(event.id):
            if probe.match is None:
                continue  # answered only: it has no verdict to flip
            change = ProbeChange(probe.probe_id, event.step, probe.prompt, probe.golden, probe.model_output)
            was = previous.get(probe.probe_id)
            if was is False and probe.match:
                history.flipped_to_match.append(change)
            elif was is True and not probe.match:
                history.regressed.append(change)
            previous[probe.probe_id] = probe.match
            last_seen[probe.probe_id] = change
            if probe.match:
                ever_matched.add(probe.probe_id)
    history.never_matched.extend(c for pid, c in sorted(last_seen.items()) if pid not in ever_matched)
    return history


def compare(reader: LedgerReader, refs: Sequence[str]) -> Comparison:
    runs = [reader.run(ref) for ref in refs]
    evals = {run.id: {event.step: event for event in reader.full_evals(run.id)} for run in runs}
    steps = sorted({step for by_step in evals.values() for step in by_step})
    missing = object()
    keys = sorted({key for run in runs for key in run.config})
    diff = {}
    for key in keys:
        values = [run.config.get(key, missing) for run in runs]
        if any(value != values[0] for value in values[1:]):
            diff[key] = [None if value is missing else value for value in values]
    return Comparison(runs, steps, evals, diff)


def run_sql(reader: LedgerReader, sql: str) -> SqlResult:
    """Run one statement that only reads; anything that would write (or ATTACH, or set a PRAGMA) is refused."""
    denied: list[int] = []

    def allow_reads_only(action: int, arg1: str | None, *_: str | None) -> int:
        if action in _READ_ACTIONS or (action == sqlite3.SQLITE_PRAGMA and arg1 in _SCHEMA_PRAGMAS):
            return sqlite3.SQLITE_OK
        denied.append(action)
        return sqlite3.SQLITE_DENY

    connection = reader.ledger.db.connection()
    connection.set_authorizer(allow_reads_only)
    try:
        cursor = connection.execute(sql)
        columns = _unique([column[0] for column in cursor.description or ()])
        return SqlResult(columns, cursor.fetchall())
    except (sqlite3.Error, DatabaseError, ValueError) as err:
        if denied or "readonly" in str(err):
            raise LedgerError(
                f"{reader.path}: refused: twotier ledger sql only reads (SELECT, WITH, PRAGMA table_info);"
                " the ledger was not changed"
            ) from err
        raise LedgerError(f"{reader.path}: sql: {first_line(err)}") from err
    finally:
        connection.set_authorizer(None)


def _unique(names: list[str]) -> list[str]:
    """Column names as record keys: a repeated name (two `id`s in a join) gets a suffix instead of vanishing."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _number(value: float | None) -> float:
    return math.nan if value is None else value
