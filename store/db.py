"""Opening a ledger file: the pragmas every connection needs, the schema, and its version."""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from peewee import DatabaseError, OperationalError, SqliteDatabase

from .errors import LedgerError, LedgerNotReady
from .migrations import MIGRATIONS, add_missing_columns
from .schema import SCHEMA_VERSION, Tables, bind_tables

log = logging.getLogger("twotier.ledger")

DEFAULT_LEDGER = Path("runs/ledger.db")
BUSY_TIMEOUT_MS = 5000
MOUNTS = Path("/proc/mounts")
# SQLite checkpoints the WAL into the database every this many pages (4 KiB each), and cuts the
# -wal file back to JOURNAL_LIMIT_BYTES after a checkpoint: the file stays a few MiB, not the run's size.
WAL_AUTOCHECKPOINT_PAGES = 1000
JOURNAL_LIMIT_BYTES = 4 * 1024 * 1024
# WAL needs shared memory between processes, which these filesystems do not give reliably.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "sshfs",
    }
)


@dataclass(frozen=True)
class Ledger:
    """An open ledger: its path, its database handle (one connection per thread) and its tables."""

    path: Path
    db: SqliteDatabase
    tables: Tables
    readonly: bool

    def close(self) -> None:
        self.db.close()


def open_ledger(
    path: str | Path, *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS, mounts: Path = MOUNTS
) -> Ledger:
    """Open (and for writers create) the ledger at `path`; any problem is one LedgerError, never a traceback.

    Writers get WAL with synchronous=NORMAL and IMMEDIATE write transactions (journal_mode=DELETE on a
    network filesystem); readers open the file read-only, so a viewer can never damage it nor take
    the write lock. A file that is not a twotier ledger of a known version is refused, never overwritten.
    """
    try:
        path = Path(path)
        _check_path(path, must_exist=readonly)
        db = _reader_database(path, busy_timeout_ms) if readonly else _writer_database(path, busy_timeout_ms, mounts)
    except ValueError as err:  # e.g. a NUL byte in the path
        raise LedgerError(f"{path!r}: not a usable ledger path: {err}") from err
    tables = bind_tables(db)
    # Look before the connection's pragmas touch anything: switching to WAL rewrites the header.
    version, complete = _check_contents(path, db.database, tables, readonly)
    if readonly and not complete:
        # A viewer of an older ledger upgrades it once, as a writer would, then reads as usual.
        open_ledger(path, busy_timeout_ms=busy_timeout_ms, mounts=mounts).close()
    try:
        db.connect(reuse_if_open=True)
        if not readonly and (version < SCHEMA_VERSION or not complete):
            _upgrade_schema(db, tables)
    except (DatabaseError, OperationalError, sqlite3.DatabaseError) as err:
        db.close()
        raise LedgerError(f"{path}: cannot open the ledger: {err}") from err
    return Ledger(path=path, db=db, tables=tables, readonly=readonly)


def _check_contents(path: Path, database: str, tables: Tables, readonly: bool) -> tuple[int, bool]:
    """The ledger's schema version and whether it has every column the records declare, after refusing
    newer, foreign or damaged files; (0, False) for a new file."""
    if not path.exists() or path.stat().st_size == 0:
        if readonly:
            raise LedgerNotReady(f"{path}: not a twotier ledger (it is empty)")
        return 0, False
    ours = {model._meta.table_name: {f.column_name for f in model._meta.sorted_fields} for model in tables.models}
    uri = database if readonly else f"file:{path.resolve()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            # Reading the schema parses page 1: a damaged ledger fails here, at open, not mid-run.
            names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = any(
                table not in names or columns - {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                for table, columns in ours.items()
            )
        finally:
            connection.close()
    except sqlite3.Error as err:
        # SQLite reads the header, never Python: closing a file this process opened with open() would drop every
        # lock its SQLite connections hold on it (POSIX locks belong to the process), and another process that
        # then closes the ledger would take itself for the last one and delete the WAL this process writes to.
        if "not a database" in str(err):
            raise LedgerError(f"{path}: not a SQLite file; twotier will not touch it") from err
        raise LedgerError(f"{path}: cannot open the ledger: {err}") from err
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"{path}: ledger schema version {version} is newer than this twotier understands "
            f"({SCHEMA_VERSION}); upgrade twotier to read it"
        )
    if version == 0 and names - set(ours):
        raise LedgerError(
            f"{path}: a SQLite file of something else (tables {', '.join(sorted(names)[:4])}), "
            "not a twotier ledger; twotier will not touch it"
        )
    # Every ledger, since the first version, has these; a table added later is created on open.
    if (readonly or version == SCHEMA_VERSION) and not {"run", "event"} <= names:
        raise LedgerNotReady(f"{path}: not a twotier ledger (it has no twotier tables)")
    return version, version == SCHEMA_VERSION and not missing


def filesystem_type(folder: Path, mounts: Path = MOUNTS) -> str | None:
    """The type of the filesystem holding `folder`, from the longest matching mount point; None if unknown."""
    try:
        lines = mounts.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = str(folder.resolve())
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def is_network_filesystem(fstype: str | None) -> bool:
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."))


def _reader_database(path: Path, busy_timeout_ms: int) -> SqliteDatabase:
    # On a read-only filesystem no writer can exist and SQLite cannot create the -shm file that WAL
    # readers need: `immutable` tells it the file cannot change, so it needs none.
    flags = "mode=ro&immutable=1" if _on_readonly_filesystem(path.parent) else "mode=ro"
    return SqliteDatabase(
        f"file:{path.resolve()}?{flags}",
        uri=True,
        timeout=busy_timeout_ms / 1000,
        pragmas=[("busy_timeout", busy_timeout_ms), ("query_only", 1)],
    )


def _writer_database(path: Path, busy_timeout_ms: int, mounts: Path) -> SqliteDatabase:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LedgerError(f"{path}: cannot create the ledger's folder: {err.strerror}") from err
    if (
        _on_readonly_filesystem(folder)
        or not os.access(folder, os.W_OK)
        or (path.exists() and not os.access(path, os.W_OK))
    ):
        raise LedgerError(f"{path}: the ledger is in a read-only place; training needs to write it (pass --ledger)")
    journal = "wal"
    fstype = filesystem_type(folder, mounts)
    if is_network_filesystem(fstype):
        journal = "delete"
        log.warning(
            "%s is on a network filesystem (%s), where SQLite's WAL is unsafe: using journal_mode=DELETE "
            "(viewers may wait while the trainer commits)",
            path,
            fstype,
        )
    # busy_timeout comes first so that switching the journal mode also waits for other openers.
    return SqliteDatabase(
        str(path),
        timeout=busy_timeout_ms / 1000,
        pragmas=[
            ("busy_timeout", busy_timeout_ms),
            ("journal_mode", journal),
            ("synchronous", "normal"),
            ("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES),
            ("journal_size_limit", JOURNAL_LIMIT_BYTES),
            ("foreign_keys", 1),
        ],
        lock_type="IMMEDIATE",
    )


def _on_readonly_filesystem(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _upgrade_schema(db: SqliteDatabase, tables: Tables) -> None:
    """Create the schema in a new ledger, or migrate an older one version by version."""
    # One IMMEDIATE transaction: of several processes opening a ledger at once, one creates or
    # migrates the schema and the others find it done. Foreign keys are off meanwhile: a migration that
    # rebuilds a table (SQLite's way to change a column) must not cascade its delete to the rows that
    # refer to it.
    db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        _upgrade_in_one_transaction(db, tables)
    finally:
        db.execute_sql("PRAGMA foreign_keys = ON")


def _upgrade_in_one_transaction(db: SqliteDatabase, tables: Tables) -> None:
    with db.atomic():
        version = db.execute_sql("PRAGMA user_version").fetchone()[0]
        if version == 0:
            db.create_tables(tables.models, safe=True)
        else:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                if target in MIGRATIONS:
                    log.info("migrating ledger %s to schema version %d", db.database, target)
                    MIGRATIONS[target](db)
            add_missing_columns(db, tables.models)
        if version < SCHEMA_VERSION:
            db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_path(path: Path, *, must_exist: bool) -> None:
    if not path.exists():
        if must_exist:
            raise LedgerError(f"{path}: no ledger there (run a training first, or pass --ledger)")
        return
    if path.is_dir():
        raise LedgerError(f"{path}: is a folder, not a ledger file")
