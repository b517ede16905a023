"""Flat records for export: one per event, or one per probe answer, as JSON lines, CSV or Parquet."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from .errors import LedgerError
from .reader import LedgerReader
from .records import Kind, ProbeResult, StepEvent

# The records' own fields, in their order: a field added to a record is exported with no edit here.
EVENT_COLUMNS = tuple(f.name for f in dataclasses.fields(StepEvent) if f.name != "probes")
PROBE_COLUMNS = ("run_id", "step", *(f.name for f in dataclasses.fields(ProbeResult)))
FORMATS = ("jsonl", "csv", "parquet")


def event_record(event: StepEvent) -> dict[str, Any]:
    record = {column: getattr(event, column) for column in EVENT_COLUMNS}
    record["kind"] = event.kind.value
    return record


def event_records(
    reader: LedgerReader, run_id: str | None = None, kind: Kind | None = None
) -> Iterator[dict[str, Any]]:
    for event in reader.iter_events(run_id, kind=kind):
        yield event_record(event)


def probe_records(reader: LedgerReader, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    for event in reader.iter_events(run_id, kind=Kind.FULL):
        assert event.id is not None
        for probe in reader.probes(event.id):
            yield {"run_id": event.run_id, "step": event.step, **dataclasses.asdict(probe)}


def write_records(
    records: Iterable[dict[str, Any]], columns: tuple[str, ...], fmt: str, out: TextIO, *, ascii_only: bool = False
) -> int:
    """Write records as `jsonl` or `csv`; returns how many. NaN is written as null / empty.

    `ascii_only` escapes every non-ASCII character in JSON (losslessly), so that no control
    character from the data reaches a terminal.
    """
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({key: _flat(value) for key, value in record.items()})
            count += 1
    else:
        for record in records:
            line = json.dumps({key: _plain(record[key]) for key in columns}, ensure_ascii=ascii_only)
            out.write(line + "\n")
            count += 1
    return count


def write_parquet(records: Iterable[dict[str, Any]], columns: tuple[str, ...], path: Path) -> int:
    """Write records as one Parquet file (pyarrow, which `datasets` brings along); returns how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{key: _flat(record[key]) for key in columns} for record in records]
    table = pa.Table.from_pylist(rows) if rows else pa.table({key: pa.array([], pa.null()) for key in columns})
    try:
        pq.write_table(table.select(list(columns)), path)
    except OSError as err:
        raise LedgerError(f"{path}: cannot write the Parquet file: {err}") from err
    return len(rows)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _flat(value: Any) -> Any:
    """A value for a flat format (CSV, Parquet): a dict such as an event's metrics becomes JSON text."""
    value = _plain(value)
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
