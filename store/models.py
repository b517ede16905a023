"""The ledger's tables as peewee models, built per database so that two ledgers can be open at once."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import (
    BlobField,
    BooleanField,
    CharField,
    Database,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

SCHEMA_VERSION = 2  # 2: event.eval_error


@dataclass(frozen=True)
class Tables:
    """The model classes bound to one database."""

    run: type[Model]
    text: type[Model]
    event: type[Model]
    probe: type[Model]

    @property
    def all(self) -> list[type[Model]]:
        return [self.run, self.text, self.event, self.probe]


def bind_tables(db: Database) -> Tables:
    """Declare the schema on `db`. Peewee binds models to one database, so each ledger gets its own."""

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Run(Base):
        """One training run: where it came from, its config, and how it ended."""

        id = CharField(primary_key=True)
        name = CharField(index=True)
        status = CharField(index=True)
        model = TextField()
        dataset = TextField()
        config_json = TextField()
        started_at = FloatField()
        heartbeat_at = FloatField()
        ended_at = FloatField(null=True)
        max_steps = IntegerField(null=True)
        last_step = IntegerField(default=0)
        error = TextField(null=True)

    class Text(Base):
        """Each distinct prompt, answer or output, stored once: an epoch and the probe set repeat them."""

        digest = BlobField(unique=True)
        body = TextField()

    class Event(Base):
        """A fast log or a full eval. The full-eval columns stay NULL on a fast log."""

        run = ForeignKeyField(Run, backref="events", on_delete="CASCADE")
        step = IntegerField()
        kind = CharField()
        wall_time = FloatField()
        elapsed_s = FloatField()
        prompt = ForeignKeyField(Text)
        golden = ForeignKeyField(Text)
        loss = FloatField(null=True)
        # SQLite stores NaN as NULL; this keeps "the loss was not finite" apart from "no loss".
        loss_nonfinite = BooleanField(default=False)
        prompt_tokens = IntegerField()
        golden_tokens = IntegerField()
        batch_loss = FloatField(null=True)
        learning_rate = FloatField(null=True)
        grad_norm = FloatField(null=True)
        tokens_per_s = FloatField(null=True)
        epoch = FloatField(null=True)
        output = ForeignKeyField(Text, null=True)
        output_tokens = IntegerField(null=True)
        match = BooleanField(null=True)
        train_loss_mean = FloatField(null=True)
        val_loss = FloatField(null=True)
        gap = FloatField(null=True)
        gap_ok = BooleanField(null=True)
        heldout_accuracy = FloatField(null=True)
        heldout_token_accuracy = FloatField(null=True)
        eval_seconds = FloatField(null=True)
        # A full eval that failed (say, out of memory in generation) keeps why; its results stay NULL.
        eval_error = TextField(null=True)
        superseded = BooleanField(default=False)

        class Meta:
            indexes = ((("run", "step"), False), (("run", "kind", "step"), False))

    class Probe(Base):
        """One probe example's answer at one full eval."""

        event = ForeignKeyField(Event, backref="probes", on_delete="CASCADE")
        run = ForeignKeyField(Run, on_delete="CASCADE")
        step = IntegerField()
        probe_id = IntegerField()
        prompt = ForeignKeyField(Text)
        golden = ForeignKeyField(Text)
        output = ForeignKeyField(Text)
        match = BooleanField()
        loss = FloatField(null=True)

        class Meta:
            indexes = ((("run", "step"), False), (("run", "probe_id"), False))

    return Tables(run=Run, text=Text, event=Event, probe=Probe)
