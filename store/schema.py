"""The ledger's tables, derived from the records in `records.py`, and the conversions between rows and records.

One `Table` per record type knows, for each field, its peewee field and how a value goes in and comes
back out, so the writer, the reader and the export never list the columns themselves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from peewee import (
    JOIN,
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    Database,
    Field,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from .records import ControlRequest, ProbeResult, RunInfo, StepEvent

# 3: probe_accuracy and probe_token_accuracy (were heldout_*), run.host and run.pid (were in the config).
# 4: a probe's golden and verdict may be absent.
# A new nullable field needs no new version: `db.open_ledger` adds the missing columns of any ledger.
SCHEMA_VERSION = 4
TextId = Callable[[str], int]


@dataclass(frozen=True)
class Column:
    """One record field as stored: its name in the model, how it is stored, and its Python type."""

    attr: str
    name: str
    how: str  # value, text, json, key, run (see records.stored)
    kind: type
    nullable: bool
    keeps_nan: bool
    index: bool
    default: Any
    factory: Callable[[], Any] | None  # the dataclass's default_factory: what an absent value reads back as

    def to_db(self, value: Any, text_id: TextId | None) -> dict[str, Any]:
        """The row's columns for this field's value."""
        if self.how == "text":
            assert text_id is not None, "a record with text fields needs the ids of its texts"
            return {self.name: None if value is None else text_id(value)}
        if self.how == "json":
            return {self.name: json.dumps(value, sort_keys=True, default=str)}
        if isinstance(value, Enum):
            return {self.name: value.value}
        if self.kind is float and value is not None and not math.isfinite(value):
            # SQLite turns NaN into NULL; a flag keeps "not finite" apart from "absent" where it matters.
            return {self.name: None, **({f"{self.name}_nonfinite": True} if self.keeps_nan else {})}
        return {self.name: value}

    def from_db(self, row: dict[str, Any]) -> Any:
        """This field's value from a row read with `Table.select`'s names."""
        value = row[self.select_name]
        if value is None:
            if self.keeps_nan and row.get(f"{self.name}_nonfinite"):
                return math.nan
            if self.factory is not None:
                return self.factory()
            return self.default
        if self.how == "json":
            return json.loads(value)
        if issubclass(self.kind, Enum) or self.kind is bool:
            return self.kind(value)
        return value

    @property
    def select_name(self) -> str:
        """The name the column's value has in a selected row (a text column brings its body, not its id)."""
        return f"{self.name}_text" if self.how == "text" else self.name


@dataclass(frozen=True)
class Table:
    """A record type, its columns and its bound peewee model."""

    record: type
    columns: tuple[Column, ...]
    model: Any  # a peewee Model class built at run time: its fields are the records', unknown to a type checker

    def row(self, record: Any, text_id: TextId | None = None, **extra: Any) -> dict[str, Any]:
        """The insert row for `record`, plus storage-only `extra` columns (an event's probes' event id...).
        `text_id` gives the id of a stored text: records with text fields need it."""
        row: dict[str, Any] = dict(extra)
        for column in self.columns:
            value = getattr(record, column.attr)
            if column.how != "key" or value is not None:  # a row id of None is the database's to give
                row.update(column.to_db(value, text_id))
        return row

    def texts(self, record: Any) -> list[str]:
        """The record's texts (prompt, golden, output…): what the `text` table must hold before its row goes in."""
        return [text for c in self.columns if c.how == "text" and (text := getattr(record, c.attr)) is not None]

    def record_of(self, row: dict[str, Any], **fields: Any) -> Any:
        """The record of a row read with `select`, plus `fields` that are not stored in this table."""
        values = {column.attr: column.from_db(row) for column in self.columns}
        return self.record(**values, **fields)

    def select(self, texts: type[Model]) -> Any:
        """A query for every column, with each text joined in as its body."""
        selected: list[Any] = [self.model]
        joins = []
        for column in self.columns:
            if column.how == "text":
                alias = texts.alias()
                selected.append(alias.body.alias(column.select_name))
                joins.append((alias, getattr(self.model, column.name), column.nullable))
        query = self.model.select(*selected)
        for alias, reference, nullable in joins:
            query = query.join_from(
                self.model, alias, JOIN.LEFT_OUTER if nullable else JOIN.INNER, on=(reference == alias.id)
            )
        return query


@dataclass(frozen=True)
class Tables:
    """The ledger's tables bound to one database (peewee binds a model to one database)."""

    run: Table
    event: Table
    probe: Table
    request: Table
    text: Any  # the `text` table's Model class

    @property
    def models(self) -> list[type[Model]]:
        return [self.run.model, self.text, self.event.model, self.probe.model, self.request.model]


def record_columns(record: type) -> tuple[Column, ...]:
    """The stored fields of a record type, in declaration order."""
    hints = typing.get_type_hints(record)
    columns = []
    for spec in dataclasses.fields(record):
        how = spec.metadata.get("store", "value")
        if how == "none":
            continue
        kinds = [k for k in typing.get_args(hints[spec.name]) if k is not type(None)] or [hints[spec.name]]
        kind = typing.get_origin(kinds[0]) or kinds[0]
        nullable = isinstance(hints[spec.name], types.UnionType) and type(None) in typing.get_args(hints[spec.name])
        name = spec.metadata.get("column", "run" if how == "run" else spec.name)
        default = None if spec.default is dataclasses.MISSING else spec.default
        factory = None if spec.default_factory is dataclasses.MISSING else spec.default_factory
        columns.append(
            Column(
                spec.name,
                name,
                how,
                kind,
                nullable,
                bool(spec.metadata.get("nan")),
                bool(spec.metadata.get("index")),
                default,
                factory,
            )
        )
    return tuple(columns)


def bind_tables(db: Database) -> Tables:
    """Declare the schema on `db`: each ledger gets its own model classes."""

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Text(Base):
        """Each distinct prompt, answer or output, stored once: an epoch and the probe set repeat them."""

        digest = BlobField(unique=True)
        body = TextField()

    run = _table("Run", RunInfo, Base, Text, None)
    event = _table(
        "Event",
        StepEvent,
        Base,
        Text,
        run.model,
        extra={"superseded": BooleanField(default=False)},
        indexes=((("run", "step"), False), (("run", "kind", "step"), False)),
    )
    probe = _table(
        "Probe",
        ProbeResult,
        Base,
        Text,
        run.model,
        extra={
            "event": ForeignKeyField(event.model, backref="probes", on_delete="CASCADE"),
            "run": ForeignKeyField(run.model, on_delete="CASCADE"),
            "step": IntegerField(),
        },
        indexes=((("run", "step"), False), (("run", "probe_id"), False)),
    )
    request = _table("Request", ControlRequest, Base, Text, run.model, indexes=((("run", "done_at"), False),))
    return Tables(run=run, event=event, probe=probe, request=request, text=Text)


def _table(
    name: str,
    record: type,
    base: type[Model],
    texts: Any,
    run: Any,
    *,
    extra: dict[str, Field] | None = None,
    indexes: tuple[Any, ...] = (),
) -> Table:
    columns = record_columns(record)
    attrs: dict[str, Any] = {"__doc__": record.__doc__}
    for column in columns:
        attrs.update(_fields(column, texts, run, backref=f"{name.lower()}s"))
    attrs.update(extra or {})
    attrs["Meta"] = type("Meta", (), {"indexes": indexes})
    return Table(record, columns, type(name, (base,), attrs))


def _fields(column: Column, texts: Any, run: Any, *, backref: str) -> dict[str, Field]:
    null = column.nullable
    if column.how == "key":
        return {column.name: CharField(primary_key=True) if column.kind is str else AutoField()}
    if column.how == "run":
        return {column.name: ForeignKeyField(run, backref=backref, on_delete="CASCADE")}
    if column.how == "text":
        return {column.name: ForeignKeyField(texts, null=null)}
    if column.how == "json":
        return {column.name: TextField(null=True) if column.factory is not None or column.nullable else TextField()}
    fields: dict[str, Field] = {}
    if column.keeps_nan:
        fields[f"{column.name}_nonfinite"] = BooleanField(default=False)
    # A field with a default is a nullable column (NULL reads back as the default): a later field can then be
    # added to an existing ledger with a plain ALTER TABLE, never a table rebuild.
    options: dict[str, Any] = {"null": null or column.default is not None, "index": column.index}
    if column.default is not None:
        options["default"] = column.default
    kind = column.kind
    field_type = (
        BooleanField
        if kind is bool
        else IntegerField
        if kind is int
        else FloatField
        if kind is float
        else (CharField if issubclass(kind, Enum) or column.index else TextField)
    )
    fields[column.name] = field_type(**options)
    return fields
