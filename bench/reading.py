"""Issue 4, item 7: reading a ledger of a million events: the tail read, the run list, export, and memory.

The ledger is built once with insert_many in large transactions and kept under runs/bench/, so
later invocations reuse it; events of its last run are what a live tail would read.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

from twotier.store import Kind, LedgerReader, RunInfo, RunStatus, StepEvent, open_ledger
from twotier.store.export import EVENT_COLUMNS, event_records, write_records
from twotier.store.tail import Tail
from twotier.store.writer import create_run

from .stats import Row, Sample, judged, ratios
from .workload import BENCH_DIR, scratch_dir

SECTION = "7 reading"
RUNS = 10
TEXTS = 5000
FULL_EVERY = 20
ROWS_PER_INSERT = 1000
TAIL = 500


def ledger_of(total: int) -> Path:
    """The cached ledger of `total` events over RUNS runs, built when missing or incomplete."""
    path = BENCH_DIR / f"ledger-{total}.db"
    if path.exists():
        with LedgerReader(path) as reader:
            if len(reader.runs()) == RUNS and reader.tables.event.model.select().count() == total:
                return path
        for stale in path.parent.glob(path.name + "*"):
            stale.unlink()
    _build(path, total)
    return path


def _build(path: Path, total: int) -> None:
    ledger = open_ledger(path)
    tables = ledger.tables
    started = time.time()
    with ledger.db.atomic():
        tables.text.insert_many(
            [{"digest": i.to_bytes(16, "big"), "body": f"reverse word{i}= / answer {i}"} for i in range(TEXTS)]
        ).execute()
        for run in range(RUNS):
            create_run(
                ledger,
                RunInfo(
                    id=f"run{run:02d}",
                    name=f"bench-{run}",
                    status=RunStatus.FINISHED,
                    model="demo",
                    dataset="demo",
                    config={},
                    started_at=started + run,
                    heartbeat_at=started + run,
                    max_steps=total // RUNS,
                ),
            )
    fields = [
        "run",
        "step",
        "kind",
        "wall_time",
        "elapsed_s",
        "prompt",
        "golden",
        "loss",
        "prompt_tokens",
        "golden_tokens",
        "batch_loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_s",
        "epoch",
        "output",
        "output_tokens",
        "match",
        "val_loss",
        "gap",
        "eval_seconds",
    ]
    columns = [getattr(tables.event.model, name) for name in fields]
    per_run = total // RUNS
    for run in range(RUNS):
        with ledger.db.atomic():
            for start in range(0, per_run, ROWS_PER_INSERT):
                rows = [
                    _row(f"run{run:02d}", step) for step in range(start + 1, min(per_run, start + ROWS_PER_INSERT) + 1)
                ]
                tables.event.model.insert_many(rows, fields=columns).execute()
    ledger.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()


def _row(run_id: str, step: int) -> tuple[object, ...]:
    text = 1 + step % TEXTS
    full = step % FULL_EVERY == 0
    return (
        run_id,
        step,
        "full" if full else "fast",
        1.7e9 + step,
        step * 0.1,
        text,
        1 + (step + 1) % TEXTS,
        1.0 / step,
        12,
        6,
        0.5,
        3e-3,
        1.2,
        9000.0,
        step / 6000,
        text if full else None,
        6 if full else None,
        full if full else None,
        0.4 if full else None,
        0.1 if full else None,
        0.5 if full else None,
    )


def _row_event(run_id: str, step: int) -> StepEvent:
    """The event `_row` stores, as the engine would publish it (for appending to a live copy)."""
    full = step % FULL_EVERY == 0
    return StepEvent(
        run_id=run_id, step=step, kind=Kind.FULL if full else Kind.FAST, wall_time=1.7e9 + step,
        elapsed_s=step * 0.1, prompt=f"reverse word{step % TEXTS}= / answer {step % TEXTS}",
        golden=f"reverse word{(step + 1) % TEXTS}=", loss=1.0 / step, prompt_tokens=12, golden_tokens=6,
        batch_loss=0.5, learning_rate=3e-3, grad_norm=1.2, tokens_per_s=9000.0, epoch=step / 6000,
        model_output="ok" if full else None, output_tokens=6 if full else None, match=True if full else None,
        val_loss=0.4 if full else None, gap=0.1 if full else None, eval_seconds=0.5 if full else None,
    )  # fmt: skip


def _timed_ms(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return (time.perf_counter() - started) * 1e3


def _last_id(reader: LedgerReader, run_id: str) -> int:
    Event = reader.tables.event.model
    return Event.select(Event.id).where(Event.run == run_id).order_by(Event.id.desc()).limit(1).scalar()


def _tail_poll_ms(path: Path, run_id: str, after_id: int) -> float:
    """One poll of the app's tailer that finds TAIL new rows past its high-water mark."""
    tail = Tail(path, run_id)
    tail.poll()  # opens the reader and resolves the run, as the app's first poll does
    tail.last_id = after_id
    try:
        return _timed_ms(tail.poll)
    finally:
        tail.close()


def _tail_memory(path: Path, run_id: str, rows: int) -> tuple[float, float]:
    """Peak traced memory (MB) after a tenth of the run and after all of it, tailed TAIL rows per poll."""
    tail = Tail(path, run_id, chunk=TAIL)
    # Past the first row, as a viewer that has followed the run live: a fresh Tail of a long run would
    # open at its end instead, and read only its last events.
    tail.last_id = 1
    tracemalloc.start()
    read, early = 0, 0.0
    try:
        while (poll := tail.poll()).events:
            read += len(poll.events)
            if not early and read >= rows // 10:
                early = tracemalloc.get_traced_memory()[1] / 1e6
        return early, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
        tail.close()


def measure(quick: bool) -> list[Row]:
    total, repeats = (100_000, 3) if quick else (1_000_000, 5)
    started = time.perf_counter()
    path = ledger_of(total)
    built = time.perf_counter() - started
    run_id = f"run{RUNS - 1:02d}"
    out = scratch_dir() / "export.jsonl"
    tail, polls, listing, export = [], [], [], []
    with LedgerReader(path) as reader:
        last = _last_id(reader, run_id)
        for _ in range(repeats):
            tail.append(_timed_ms(lambda: reader.events_after(run_id, last - TAIL, TAIL)))
            polls.append(_tail_poll_ms(path, run_id, last - TAIL))
            listing.append(_timed_ms(lambda: reader.runs()))
            with out.open("w", encoding="utf-8") as handle:
                export.append(
                    _timed_ms(lambda: write_records(event_records(reader, run_id), EVENT_COLUMNS, "jsonl", handle))
                    / 1e3
                )
    out.unlink()
    per_run = total // RUNS
    early, peak = _tail_memory(path, run_id, per_run)
    return [
        Row(
            SECTION,
            f"ledger of {total:,} events, {RUNS} runs",
            Sample.of([built]),
            "s",
            note=f"{path} ({path.stat().st_size / 1e6:.0f} MB); build or reuse time, cached between invocations",
        ),
        Row(SECTION, f"LedgerReader.events_after: {TAIL} new rows", Sample.of(tail), "ms"),
        judged(
            Row(
                SECTION,
                f"tui.tailer Tail.poll: {TAIL} new rows",
                Sample.of(polls),
                "ms",
                "< 50 with refresh",
                note="the app's incremental read; the widget refresh after it is measured by the app's author",
            ),
            lambda ms: ms < 50,
        ),
        Row(SECTION, "run picker: runs()", Sample.of(listing), "ms"),
        Row(
            SECTION,
            f"export one run ({per_run:,} events, jsonl)",
            Sample.of(export),
            "s",
            note="store.export.event_records + write_records, as `twotier ledger export` does",
        ),
        Row(SECTION, "  export rate", ratios([per_run] * repeats, export), "events/s"),
        Row(SECTION, f"memory tailing one run, peak after {per_run // 10:,}", Sample.of([early]), "MB"),
        judged(
            Row(
                SECTION,
                f"memory tailing one run, peak after {per_run:,}",
                Sample.of([peak]),
                "MB",
                "flat",
                note=f"tracemalloc while Tail.poll reads {TAIL} rows a poll; flat = within 25% + 0.5 MB of the early peak",
            ),
            lambda mb: mb <= early * 1.25 + 0.5,
        ),
    ]
