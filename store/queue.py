"""The daemon's queue, kept in the ledger: a queued run is a run row (status `queued`) holding its whole config.

No second database: submitting records the run with a snapshot of its config, the working directory
and the environment variables that matter; the daemon takes the lowest `queue_position` next. Every
change is one IMMEDIATE transaction, so clients and the daemon never see half a reorder.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peewee import DatabaseError

from .db import Ledger, open_ledger
from .errors import LedgerError, TwoTierError
from .reader import LedgerReader
from .records import RunInfo, RunStatus
from .writer import create_run

# The environment a run is launched with: what decides devices, caches and the hub (CUDA_VISIBLE_DEVICES,
# HF_HOME, PYTORCH_CUDA_ALLOC_CONF...), captured at submit time as pueue captures a task's environment.
ENV_PREFIXES = ("CUDA_", "HF_", "PYTORCH_", "NCCL_", "TORCH_")
DAEMON = "daemon"


def submit(
    path: str | Path,
    config: Mapping[str, Any],
    *,
    name: str,
    model: str,
    dataset: str,
    max_steps: int | None,
    workdir: str | Path,
    environ: Mapping[str, str] | None = None,
) -> RunInfo:
    """Queue a run at the end of the queue; returns it (its id is what `twotier submit` prints)."""
    environ = os.environ if environ is None else environ
    now = time.time()
    run = RunInfo(
        id=uuid.uuid4().hex[:12],
        name=name,
        status=RunStatus.QUEUED,
        model=model,
        dataset=dataset,
        config=dict(config),
        started_at=now,
        heartbeat_at=now,
        max_steps=max_steps,
        launcher=DAEMON,
        workdir=str(Path(workdir).resolve()),
        env={k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES)},
    )
    with _writing(path) as ledger, ledger.db.atomic():
        Run = ledger.tables.run.model
        last = Run.select(Run.queue_position).where(Run.status == RunStatus.QUEUED.value)
        position = max((row.queue_position or 0 for row in last), default=0) + 1
        run = RunInfo(**{**run.__dict__, "queue_position": float(position)})
        create_run(ledger, run)
    return run


def log_path(ledger: str | Path, run_id: str) -> Path:
    """Where the daemon keeps a run's output (`twotier log RUN` reads it): beside the ledger."""
    return Path(ledger).parent / "logs" / f"{run_id}.log"


def queued(reader: LedgerReader) -> list[RunInfo]:
    """The queue, next run first."""
    return sorted(reader.runs(RunStatus.QUEUED), key=lambda run: (run.queue_position or 0, run.started_at))


def move(path: str | Path, run_ref: str, position: int) -> list[RunInfo]:
    """Put a queued run at `position` (1 is next); returns the queue as it now stands."""
    with _writing(path) as ledger, ledger.db.atomic():
        order = [run.id for run in _queue_of(ledger)]
        run = _queued_run(ledger, run_ref)
        order.remove(run.id)
        order.insert(max(0, min(position - 1, len(order))), run.id)
        Run = ledger.tables.run.model
        for index, run_id in enumerate(order, start=1):
            Run.update(queue_position=float(index)).where(Run.id == run_id).execute()
    with LedgerReader(path) as reader:
        return queued(reader)


def cancel(path: str | Path, run_ref: str) -> RunInfo:
    """Take a queued run off the queue (it stays in the ledger, `cancelled`)."""
    with _writing(path) as ledger, ledger.db.atomic():
        run = _queued_run(ledger, run_ref)
        Run = ledger.tables.run.model
        Run.update(status=RunStatus.CANCELLED.value, queue_position=None, ended_at=time.time()).where(
            Run.id == run.id
        ).execute()
    return run


def resubmit(path: str | Path, run_ref: str, environ: Mapping[str, str] | None = None) -> RunInfo:
    """Queue a new run with the config, working directory and environment of a run that ended."""
    with LedgerReader(path) as reader:
        old = reader.run(run_ref)
    if old.status.is_live or old.status is RunStatus.QUEUED:
        raise TwoTierError(
            f"run {old.id} is {old.status.value}: only a run that ended can be submitted again", exit_code=2
        )
    return submit(
        path,
        old.config,
        name=old.name,
        model=old.model,
        dataset=old.dataset,
        max_steps=old.max_steps,
        workdir=old.workdir or os.getcwd(),
        environ=old.env if environ is None else environ,
    )


def take(ledger: Ledger, run_id: str) -> bool:
    """The daemon takes a queued run off the queue to launch it; False if it was cancelled meanwhile."""
    Run = ledger.tables.run.model
    with ledger.db.atomic():
        taken = (
            Run.update(queue_position=None).where((Run.id == run_id) & (Run.status == RunStatus.QUEUED.value)).execute()
        )
    return bool(taken)


def _queue_of(ledger: Ledger) -> list[RunInfo]:
    table = ledger.tables.run
    rows = table.model.select().where(table.model.status == RunStatus.QUEUED.value).dicts()
    return sorted((table.record_of(row) for row in rows), key=lambda run: (run.queue_position or 0, run.started_at))


def _queued_run(ledger: Ledger, run_ref: str) -> RunInfo:
    with LedgerReader(ledger.path) as reader:
        run = reader.run(run_ref)
    if run.status is not RunStatus.QUEUED:
        raise TwoTierError(f"run {run.id} is {run.status.value}, not queued", exit_code=2)
    return run


class _writing:
    """The ledger opened for writing, closed again; a database error becomes one LedgerError line."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.ledger: Ledger | None = None

    def __enter__(self) -> Ledger:
        self.ledger = open_ledger(self.path)
        return self.ledger

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: Any) -> None:
        assert self.ledger is not None
        self.ledger.close()
        if isinstance(error, DatabaseError):
            raise LedgerError(f"{self.path}: cannot write the queue: {error}") from error
