"""Steering a run from outside its process: a pause, unpause or stop request written into the ledger.

The run's own writer reads its pending requests every flush, the training loop acts on them at the
next step end (on every rank at once), and the writer marks them done with the run's new status. Who
may steer is who may write the ledger file: SQLite needs write access to it and to its folder, so with
the usual permissions (0644 files, 0755 folders) only the ledger's owner (and root) can.
"""

from __future__ import annotations

import getpass
import os
import pwd
import socket
import time
from pathlib import Path

from peewee import DatabaseError

from .db import Ledger, open_ledger
from .errors import LedgerError, TwoTierError
from .reader import LedgerReader
from .records import Action, ControlRequest, RunInfo, RunStatus


def requester() -> str:
    """Who asks, as shown beside a pending request: user@host pid N."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def request_control(path: str | Path, run_ref: str, action: Action) -> tuple[RunInfo, ControlRequest]:
    """Ask run `run_ref` of the ledger at `path` to pause, unpause or stop; returns the run and the request.

    Refused, in one line, for a run that is not live (finished, failed, queued: a queued run is cancelled
    with `twotier cancel`), for a pause of a paused run or an unpause of a running one, and for a user who
    cannot write the ledger.
    """
    with LedgerReader(path) as reader:
        run = reader.run(run_ref)
        status = reader.run_status(run)
    if status == "stale":
        raise TwoTierError(f"run {run.id} is stale: its process is gone, so nothing can act on a request", exit_code=2)
    if not run.status.is_live:
        raise TwoTierError(
            f"run {run.id} is {run.status.value}: only a running or paused run can be steered", exit_code=2
        )
    if (action is Action.PAUSE and run.status is RunStatus.PAUSED) or (
        action is Action.UNPAUSE and run.status is RunStatus.RUNNING
    ):
        raise TwoTierError(f"run {run.id} is already {run.status.value}", exit_code=2)
    ledger = _open_for_request(Path(path))
    try:
        request = ControlRequest(run_id=run.id, action=action, requested_at=time.time(), requested_by=requester())
        table = ledger.tables.request
        with ledger.db.atomic():
            row_id = table.model.insert(**table.row(request)).execute()
    except DatabaseError as err:
        raise LedgerError(f"{path}: cannot write the request: {err}") from err
    finally:
        ledger.close()
    return run, ControlRequest(**{**request.__dict__, "id": row_id})


def _open_for_request(path: Path) -> Ledger:
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise LedgerError(
            f"{path}: you cannot write this ledger, so you cannot steer its runs (ask its owner, {_owner(path)})"
        )
    return open_ledger(path)


def _owner(path: Path) -> str:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        return f"uid {path.stat().st_uid}"
