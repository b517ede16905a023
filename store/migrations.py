"""Schema changes between ledger versions, applied in order when a writer opens an older ledger."""

from __future__ import annotations

from collections.abc import Callable

from peewee import SqliteDatabase, TextField
from playhouse.migrate import SqliteMigrator, migrate


def _add_eval_error(db: SqliteDatabase) -> None:
    migrate(SqliteMigrator(db).add_column("event", "eval_error", TextField(null=True)))


# Version N is reached by applying MIGRATIONS[N] to a ledger of version N - 1.
MIGRATIONS: dict[int, Callable[[SqliteDatabase], None]] = {2: _add_eval_error}
