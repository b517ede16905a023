"""Opening a ledger file: the pragmas every connection needs, the schema, and its version."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from peewee import DatabaseError, OperationalError, SqliteDatabase

from .errors import LedgerError
from .models import SCHEMA_VERSION, Tables, bind_tables

DEFAULT_LEDGER = Path("runs/ledger.db")
BUSY_TIMEOUT_MS = 5000
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Ledger:
    """An open ledger: its path, its database handle (one connection per thread) and its tables."""

    path: Path
    db: SqliteDatabase
    tables: Tables
    readonly: bool

    def close(self) -> None:
        self.db.close()


def open_ledger(path: str | Path, *, readonly: bool = False) -> Ledger:
    """Open (and for writers create or migrate) the ledger at `path`.

    Writers get WAL with synchronous=NORMAL and IMMEDIATE write transactions; readers open
    the file read-only, so a viewer can never damage it nor take the write lock.
    """
    path = Path(path)
    _check_is_sqlite(path, must_exist=readonly)
    if readonly:
        db = SqliteDatabase(
            f"file:{path.resolve()}?mode=ro",
            uri=True,
            pragmas={"busy_timeout": BUSY_TIMEOUT_MS, "query_only": 1},
        )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LedgerError(f"{path}: cannot create the ledger's folder: {err.strerror}") from err
        db = SqliteDatabase(
            str(path),
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "busy_timeout": BUSY_TIMEOUT_MS,
                "foreign_keys": 1,
            },
            lock_type="IMMEDIATE",
        )
    tables = bind_tables(db)
    try:
        db.connect(reuse_if_open=True)
        version = db.execute_sql("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{path}: ledger schema version {version} is newer than this twotier understands "
                f"({SCHEMA_VERSION}); upgrade twotier to read it"
            )
        if not readonly and version < SCHEMA_VERSION:
            _create_schema(db, tables)
        elif readonly and version == 0:
            raise LedgerError(f"{path}: not a twotier ledger (it has no twotier tables)")
    except (DatabaseError, OperationalError, sqlite3.DatabaseError) as err:
        db.close()
        raise LedgerError(f"{path}: cannot open the ledger: {err}") from err
    except LedgerError:
        db.close()
        raise
    return Ledger(path=path, db=db, tables=tables, readonly=readonly)


def _create_schema(db: SqliteDatabase, tables: Tables) -> None:
    # One IMMEDIATE transaction: of several processes opening a fresh ledger at once, one
    # creates the schema and the others find it done.
    with db.atomic():
        if db.execute_sql("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        db.create_tables(tables.all, safe=True)
        db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_is_sqlite(path: Path, *, must_exist: bool) -> None:
    if not path.exists():
        if must_exist:
            raise LedgerError(f"{path}: no ledger there (run a training first, or pass --ledger)")
        return
    if path.is_dir():
        raise LedgerError(f"{path}: is a folder, not a ledger file")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise LedgerError(f"{path}: cannot read the ledger: {err.strerror}") from err
    if header and header != SQLITE_HEADER:
        raise LedgerError(f"{path}: not a SQLite file; twotier will not touch it")
