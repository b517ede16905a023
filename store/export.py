"""Flat records for export: one per event, or one per probe answer, as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from .reader import LedgerReader
from .records import Kind

EVENT_COLUMNS = (
    "run_id", "step", "kind", "prompt", "golden", "loss", "prompt_tokens", "golden_tokens",
    "model_output", "output_tokens", "match", "train_loss_mean", "val_loss", "gap",
    "heldout_accuracy", "heldout_token_accuracy", "eval_seconds", "batch_loss", "learning_rate",
    "grad_norm", "tokens_per_s", "epoch", "wall_time", "elapsed_s",
)  # fmt: skip
PROBE_COLUMNS = ("run_id", "step", "probe_id", "prompt", "golden", "model_output", "match", "loss")
FORMATS = ("jsonl", "csv")


def event_records(reader: LedgerReader, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    for event in reader.iter_events(run_id):
        record = {column: getattr(event, column) for column in EVENT_COLUMNS}
        record["kind"] = event.kind.value
        yield record


def probe_records(reader: LedgerReader, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    for event in reader.iter_events(run_id, kind=Kind.FULL):
        assert event.id is not None
        for probe in reader.probes(event.id):
            yield {
                "run_id": event.run_id,
                "step": event.step,
                "probe_id": probe.probe_id,
                "prompt": probe.prompt,
                "golden": probe.golden,
                "model_output": probe.model_output,
                "match": probe.match,
                "loss": probe.loss,
            }


def write_records(records: Iterable[dict[str, Any]], columns: tuple[str, ...], fmt: str, out: TextIO) -> int:
    """Write records as `jsonl` or `csv`; returns how many. NaN is written as null / empty."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({key: _plain(value) for key, value in record.items()})
            count += 1
    else:
        for record in records:
            out.write(json.dumps({key: _plain(record[key]) for key in columns}, ensure_ascii=False) + "\n")
            count += 1
    return count


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
