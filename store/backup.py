"""A consistent copy of a ledger that may be in use: SQLite's online backup, never a file copy.

Copying the file while a trainer writes can catch half a transaction (and misses the -wal file); the
backup API copies a snapshot of committed pages, a few at a time so the writer is never held up long.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .db import Ledger, open_ledger
from .errors import LedgerError

PAGES_PER_STEP = 256


def backup_ledger(source: str | Path, destination: str | Path, *, pages_per_step: int = PAGES_PER_STEP) -> int:
    """Copy the ledger at `source` to `destination` (which must not exist); returns the copy's size in bytes.

    The copy is written beside the destination and renamed into place once complete and checked, so
    a failed or interrupted backup leaves no half-written file under the destination's name.
    """
    source, destination = Path(source), Path(destination)
    ledger = open_ledger(source, readonly=True)  # refuses anything that is not a readable twotier ledger
    try:
        return _copy(ledger, destination, pages_per_step)
    finally:
        ledger.close()


def _copy(ledger: Ledger, destination: Path, pages_per_step: int) -> int:
    source = ledger.path
    if destination.exists():
        raise LedgerError(f"{destination}: already exists; the backup will not overwrite it")
    if destination.resolve() == source.resolve():
        raise LedgerError(f"{destination}: is the ledger itself")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        target = sqlite3.connect(partial)
        try:
            ledger.db.connection().backup(target, pages=pages_per_step)
            target.execute("PRAGMA journal_mode = DELETE")  # a lone file: no -wal to carry along
            verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
        if verdict != "ok":
            raise LedgerError(f"{source}: the backup does not pass SQLite's integrity check: {verdict}")
        os.replace(partial, destination)
    except (sqlite3.Error, OSError) as err:
        raise LedgerError(f"{source}: cannot back up the ledger to {destination}: {err}") from err
    finally:
        partial.unlink(missing_ok=True)
    return destination.stat().st_size
