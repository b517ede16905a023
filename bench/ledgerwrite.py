"""Issue 4, item 5: the ledger's write path as the training thread sees it, and what reaches the disk when.

Submit is timed one call at a time at a training-like pace; throughput, size and delay use the
real LedgerWriter on a fresh ledger, with distinct texts per event (the worst case for interning).
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from pathlib import Path

from twotier.engine.demo import demo_pairs
from twotier.store import Kind, RunStatus, StepEvent, open_ledger

from .stats import Row, Sample, judged
from .workload import RUN_ID, open_run, scratch_dir

SECTION = "5 ledger write"
PACE_S = 0.001


def fast_events(count: int, seed: int = 0) -> list[StepEvent]:
    """Fast-log events as the demo writes them: a distinct example each, five scalars."""
    pairs = demo_pairs(count, seed)
    now = time.time()
    return [
        StepEvent(
            run_id=RUN_ID,
            step=i + 1,
            kind=Kind.FAST,
            wall_time=now,
            elapsed_s=float(i),
            prompt=p["prompt"],
            golden=p["answer"],
            loss=1.0 / (i + 1),
            prompt_tokens=len(p["prompt"]) + 1,
            golden_tokens=len(p["answer"]) + 1,
            batch_loss=0.5,
            learning_rate=3e-3,
            grad_norm=1.5,
            tokens_per_s=9000.0,
        )
        for i, p in enumerate(pairs)
    ]


def paced_put_times(put: object, events: list[StepEvent]) -> list[float]:
    """Seconds each `put(event)` took, one call every PACE_S, as a training loop hands over events."""
    call = put  # type: ignore[assignment]
    spent = []
    for event in events:
        started = time.perf_counter()
        call(event)  # type: ignore[operator]
        spent.append(time.perf_counter() - started)
        time.sleep(PACE_S)
    return spent


def _submit_times(events: list[StepEvent]) -> list[float]:
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        writer = open_run(Path(folder) / "ledger.db")
        spent = paced_put_times(writer.submit, events)
        writer.close(RunStatus.FINISHED)
    return spent


def _throughput_and_size(events: list[StepEvent]) -> tuple[float, float]:
    """Events/s from the first submit until close() has committed the last, and bytes per event on disk."""
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        path = Path(folder) / "ledger.db"
        writer = open_run(path)
        empty = _size_after_checkpoint(path)
        started = time.perf_counter()
        for event in events:
            writer.submit(event)
        writer.close(RunStatus.FINISHED)
        seconds = time.perf_counter() - started
        return len(events) / seconds, (_size_after_checkpoint(path) - empty) / len(events)


def _size_after_checkpoint(path: Path) -> int:
    ledger = open_ledger(path)
    ledger.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    return path.stat().st_size


def _commit_delays(events: list[StepEvent], every_s: float) -> list[float]:
    """Seconds from submit to the moment a reader in another thread sees the row."""
    delays: list[float] = []
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        path = Path(folder) / "ledger.db"
        writer = open_run(path)
        submitted: dict[int, float] = {}
        done = threading.Event()
        seen: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()
        watcher = threading.Thread(target=_watch, args=(path, done, seen), daemon=True)
        watcher.start()
        for event in events:
            submitted[event.step] = time.perf_counter()
            writer.submit(event)
            time.sleep(every_s)
        writer.close(RunStatus.FINISHED)
        time.sleep(0.05)
        done.set()
        watcher.join()
        while not seen.empty():
            step, at = seen.get()
            delays.append(at - submitted[step])
    return delays


def _watch(path: Path, done: threading.Event, seen: queue.SimpleQueue[tuple[int, float]]) -> None:
    ledger = open_ledger(path, readonly=True)
    after = 0
    while not done.is_set():
        rows = ledger.db.execute_sql("SELECT id, step FROM event WHERE id > ? ORDER BY id", (after,)).fetchall()
        now = time.perf_counter()
        for row_id, step in rows:
            seen.put((step, now))
            after = row_id
        time.sleep(0.002)
    ledger.close()


def measure(quick: bool) -> list[Row]:
    repeats, paced, burst, delayed = (3, 300, 5000, 60) if quick else (5, 1500, 20000, 200)
    events = fast_events(max(paced, burst))
    p50, p99, floor99, rates, sizes = [], [], [], [], []
    for _ in range(repeats):
        spent = Sample.of(_submit_times(events[:paced]))
        p50.append(spent.quantile(0.5) * 1e3)
        p99.append(spent.quantile(0.99) * 1e3)
        idle: queue.SimpleQueue[StepEvent] = queue.SimpleQueue()
        floor99.append(Sample.of(paced_put_times(idle.put, events[:paced])).quantile(0.99) * 1e3)
        rate, size = _throughput_and_size(events[:burst])
        rates.append(rate)
        sizes.append(size)
    delays = Sample.of(_commit_delays(events[:delayed], every_s=0.01)).scaled(1e3)
    return [
        Row(
            SECTION,
            "submit on training thread, p50",
            Sample.of(p50),
            "ms",
            note=f"{paced} calls one per {PACE_S * 1e3:.0f} ms per repetition, each call timed",
        ),
        judged(Row(SECTION, "submit on training thread, p99", Sample.of(p99), "ms", "< 0.1"), lambda ms: ms < 0.1),
        Row(
            SECTION,
            "  floor: put on a queue nobody waits on, p99",
            Sample.of(floor99),
            "ms",
            note="the same loop on a SimpleQueue with no consumer thread: what the hand-off costs without waking the writer",
        ),
        Row(
            SECTION,
            "sustained throughput through the writer",
            Sample.of(rates),
            "events/s",
            note=f"{burst} events submitted at once, until close() has committed them",
        ),
        Row(SECTION, "bytes per fast-log event on disk", Sample.of(sizes), "B", note="distinct texts in every event"),
        Row(
            SECTION,
            "event -> visible to a reader",
            delays,
            "ms",
            note=f"per event, one event per 10 ms; p99 {delays.quantile(0.99):.0f} ms, max {delays.high:.0f} ms (flush every 250 ms)",
        ),
    ]
