"""`twotier-tui --headless`: the engine without the app, printing each event as a block."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from typing import TextIO

from ..engine.config import Config
from ..store import RunStatus, StepEvent, TwoTierError
from .blocks import event_block, fmt_loss

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


@dataclass
class _Summary:
    """What the closing line reports, gathered from the events as they pass."""

    first_loss: float | None = None
    last_loss: float | None = None
    last_full: StepEvent | None = None
    last_step: int = 0

    def add(self, event: StepEvent) -> None:
        if self.first_loss is None:
            self.first_loss = event.batch_loss
        self.last_loss = event.batch_loss
        self.last_step = event.step
        if event.is_full:
            self.last_full = event

    def line(self, status: RunStatus, run_id: str | None, ledger: str) -> str:
        parts = [f"run {run_id} {status.value} at step {self.last_step}",
                 f"train loss {fmt_loss(self.first_loss)} → {fmt_loss(self.last_loss)}"]  # fmt: skip
        if self.last_full is not None:
            parts.append(f"val loss {fmt_loss(self.last_full.val_loss)}")
            if self.last_full.heldout_accuracy is not None:
                parts.append(f"held-out accuracy {self.last_full.heldout_accuracy:.2f}")
        parts.append(f"ledger {ledger}")
        return "✔ " + ", ".join(parts) if status is RunStatus.FINISHED else "✖ " + ", ".join(parts)


def run_headless(config: Config, out: TextIO = sys.stdout) -> int:
    """Train in a background thread, print every event; returns the process exit status."""
    from ..engine.runner import RunEnded, TrainingRun  # torch loads here, and only here

    run = TrainingRun(config)
    caught: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        caught.append(signum)
        run.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNAL_EXIT}
    summary = _Summary()
    try:
        run.start()
        while True:
            message = run.events.get()
            if isinstance(message, RunEnded):
                break
            summary.add(message)
            out.write("\n".join(event_block(message)) + "\n")
            out.flush()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    run.join()
    if message.run_id is not None:
        out.write(summary.line(message.status, message.run_id, config.ledger) + "\n")
    if message.status is RunStatus.FAILED:
        raise TwoTierError(message.error or "training failed", exit_code=message.exit_code)
    return SIGNAL_EXIT[signal.Signals(caught[0])] if caught else 0

