"""The app's refresh on a long run: a poll of 10 new events, applied and repainted, on a ledger of a million.

The app is attached, through Textual's Pilot at 120x40 (and 80x24), to the last run of the reading
section's ledger, marked live; each round the real writer appends 10 events, one `Tail.poll` reads
them, and the app applies them and repaints (Pilot's wait for the app to be idle ends the round).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from twotier.store import LedgerWriter, RunStatus, open_ledger
from twotier.store.tail import Tail

from .reading import ledger_of
from .stats import Row, Sample, judged
from .workload import scratch_dir

SECTION = "9 app refresh"
BURST = 10
GOAL_MS = 50.0


def measure(quick: bool) -> list[Row]:
    total = 100_000 if quick else 1_000_000
    rounds = 10 if quick else 30
    rows = []
    for size in ((120, 40), (80, 24)):
        path = _live_copy(ledger_of(total), scratch_dir() / "app-ledger.db")
        poll_ms, refresh_ms = asyncio.run(_rounds(path, size, rounds))
        label = f"{size[0]}x{size[1]}"
        rows.append(Row(SECTION, f"poll of {BURST} new events, {label}", Sample.of(poll_ms), "ms",
                        note=f"{total:,}-event ledger, {rounds} rounds"))  # fmt: skip
        refresh = Row(
            SECTION, f"  poll + apply + repaint, {label}", Sample.of(refresh_ms), "ms", goal=f"< {GOAL_MS:.0f}"
        )
        rows.append(judged(refresh, lambda median: median < GOAL_MS))
    return rows


def _live_copy(source: Path, target: Path) -> Path:
    """A copy whose last run is running again, so the app tails it as it would a live run."""
    import sqlite3

    for old in target.parent.glob(target.name + "*"):
        old.unlink()
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    ledger = open_ledger(target)
    Run = ledger.tables.run.model
    Run.update(status=RunStatus.RUNNING.value, heartbeat_at=time.time()).where(Run.id == "run09").execute()
    ledger.close()
    return target


async def _rounds(path: Path, size: tuple[int, int], rounds: int) -> tuple[list[float], list[float]]:
    from twotier.tui.app.app import Polled, TwoTierApp

    from .reading import _row_event

    app = TwoTierApp(path, "run09")
    tail = Tail(path, "run09")
    ledger = open_ledger(path)
    writer = LedgerWriter(ledger, "run09", flush_interval=0.01)
    poll_ms, refresh_ms = [], []
    try:
        async with app.run_test(size=size) as pilot:
            while not app.caught_up:
                await pilot.pause(0.05)
            app.workers.cancel_group(app, "tail")  # the rounds below are the app's only polls
            tail.poll()  # past the run's opening read
            with ledger.db.connection_context():
                step = ledger.tables.run.model.get_by_id("run09").last_step
            for _ in range(rounds):
                for _ in range(BURST):
                    step += 1
                    writer.submit(_row_event("run09", step))
                await asyncio.sleep(0.15)  # the writer commits every 10 ms
                started = time.perf_counter()
                poll = tail.poll()
                polled = time.perf_counter()
                app.post_message(Polled(app._generation, poll))
                await pilot.pause()
                poll_ms.append((polled - started) * 1000)
                refresh_ms.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close(RunStatus.FINISHED)
        tail.close()
    return poll_ms, refresh_ms
