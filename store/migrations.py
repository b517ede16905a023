"""Schema changes between ledger versions, applied in order when a writer opens an older ledger.

A new nullable column needs no migration here: `add_missing_columns` adds every column the records
declare that a ledger lacks. Only changes that are not additions (a rename, a move) are versioned.
"""

from __future__ import annotations

from collections.abc import Callable

from peewee import IntegerField, Model, SqliteDatabase, TextField
from playhouse.migrate import SqliteMigrator, migrate


def _probe_accuracy_and_process_columns(db: SqliteDatabase) -> None:
    """3: heldout_* become probe_* (one name for one idea); the writing process leaves the run's config."""
    migrator = SqliteMigrator(db)
    present = {column.name for column in db.get_columns("event")}
    migrate(
        *(
            migrator.rename_column("event", old, old.replace("heldout_", "probe_"))
            for old in ("heldout_accuracy", "heldout_token_accuracy")
            if old in present
        )
    )
    present = {column.name for column in db.get_columns("run")}
    migrate(
        *(
            migrator.add_column("run", name, field)
            for name, field in (("host", TextField(null=True)), ("pid", IntegerField(null=True)))
            if name not in present
        )
    )
    db.execute_sql(
        "UPDATE run SET host = json_extract(config_json, '$.host'), pid = json_extract(config_json, '$.pid'),"
        " config_json = json_remove(config_json, '$.host', '$.pid')"
    )


def _probes_without_golden(db: SqliteDatabase) -> None:
    """4: a probe may have no golden (a prompt of your own, only answered), so no verdict either."""
    migrator = SqliteMigrator(db)
    migrate(migrator.drop_not_null("probe", "golden_id"), migrator.drop_not_null("probe", "match"))


def add_missing_columns(db: SqliteDatabase, models: list[type[Model]]) -> None:
    """Add each column a model declares that its table lacks (new fields are nullable or have a default)."""
    db.create_tables(models, safe=True)
    migrator = SqliteMigrator(db)
    for model in models:
        present = {column.name for column in db.get_columns(model._meta.table_name)}
        missing = [f for f in model._meta.sorted_fields if f.column_name not in present]
        if missing:
            migrate(*(migrator.add_column(model._meta.table_name, f.column_name, f) for f in missing))


# Version N is reached by applying MIGRATIONS[N] (when there is one) to a ledger of version N - 1.
MIGRATIONS: dict[int, Callable[[SqliteDatabase], None]] = {
    3: _probe_accuracy_and_process_columns,
    4: _probes_without_golden,
}
