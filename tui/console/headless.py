"""`twotier-tui --headless`: the engine without the app, printing each event, and a CI verdict at the end.

Exit status: 0 when the run finished (and met every threshold given), 3 (VERDICT_EXIT) when it finished
but missed a threshold, the engine's status when it failed (1, or 2 for a bad config), 128+N on signal N.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from ...engine.config import Config
from ...engine.resume import ResumePoint

if TYPE_CHECKING:
    from ...engine.runner import Resumed, RunEnded
from ...store import RunStatus, StepEvent, TwoTierError
from ...store.export import EVENT_COLUMNS, event_record, write_records
from ..render import event_block, fmt_duration, fmt_fraction, fmt_loss

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
VERDICT_EXIT = 3
NAN_FIELDS = ("loss", "batch_loss", "train_loss_mean", "val_loss", "grad_norm")


@dataclass(frozen=True)
class Thresholds:
    """What a finished run must reach to pass, judged on its last full eval; None is not checked."""

    min_probe_accuracy: float | None = None
    max_val_loss: float | None = None
    max_gap: float | None = None
    fail_on_nan: bool = False

    def verdict(self, last_full: StepEvent | None, first_nan: tuple[int, str, float] | None) -> list[tuple[bool, str]]:
        """(passed, what was checked with its figures) for each threshold given."""
        checks: list[tuple[bool, str]] = []
        if self.fail_on_nan and first_nan is None:
            checks.append((True, "every loss finite"))
        elif self.fail_on_nan and first_nan is not None:
            step, name, bad = first_nan
            checks.append((False, f"{name.replace('_', ' ')} is {bad} at step {step} (--fail-on-nan)"))
        limits = (
            ("probe accuracy", "probe_accuracy", "--min-probe-accuracy", self.min_probe_accuracy, False),
            ("val loss", "val_loss", "--max-val-loss", self.max_val_loss, True),
            ("gap", "gap", "--max-gap", self.max_gap, True),
        )
        for name, field, flag, limit, is_max in limits:
            if limit is None:
                continue
            value: float | None = None if last_full is None else getattr(last_full, field)
            if last_full is None or value is None or not math.isfinite(value):
                checks.append((False, f"{name} was not measured by a full eval, so {flag} {limit:g} is not met"))
                continue
            passed = value <= limit if is_max else value >= limit
            relation = ("≤" if passed else "is above") if is_max else ("≥" if passed else "is below")
            checks.append((passed, f"{name} {value:.4f} at step {last_full.step} {relation} {flag} {limit:g}"))
        return checks


@dataclass
class _Summary:
    """What the closing lines report, gathered from the events as they pass."""

    first_loss: float | None = None
    last_loss: float | None = None
    last_full: StepEvent | None = None
    last_step: int = 0
    first_nan: tuple[int, str, float] | None = None  # step, field, value

    def add(self, event: StepEvent) -> None:
        if self.first_loss is None:
            self.first_loss = event.batch_loss
        self.last_loss = event.batch_loss
        self.last_step = event.step
        if event.is_full:
            self.last_full = event
        if self.first_nan is None:
            bad = event.first_nonfinite(NAN_FIELDS)
            self.first_nan = None if bad is None else (event.step, *bad)

    def line(self, ended: RunEnded, ledger: str, took_s: float, resumed: Resumed | None) -> str:
        """The closing line; of a resumed run, its losses and time are those of the part this process trained."""
        status = ended.status
        step = ended.step if ended.step is not None else self.last_step
        head = f"run {ended.run_id} {status.value} at step {step}"
        if resumed is not None:
            head += f" (resumed from step {resumed.step})"
        parts = [head, f"train loss {fmt_loss(self.first_loss)} → {fmt_loss(self.last_loss)}"]
        if self.last_full is not None:
            parts.append(f"val loss {fmt_loss(self.last_full.val_loss)}")
            if self.last_full.probe_accuracy is not None:
                parts.append(f"probe accuracy {fmt_fraction(self.last_full.probe_accuracy)}")
        parts += [f"took {fmt_duration(took_s)}", f"ledger {ledger}"]
        return "✔ " + ", ".join(parts) if status is RunStatus.FINISHED else "✖ " + ", ".join(parts)


def run_headless(
    config: Config,
    out: TextIO = sys.stdout,
    *,
    thresholds: Thresholds | None = None,
    json_lines: bool = False,
    err: TextIO = sys.stderr,
    resume: ResumePoint | None = None,
) -> int:
    """Train in a background thread, print every event; returns the process exit status.

    With `json_lines`, `out` gets exactly one JSON object per event and the summary goes to `err`.
    """
    from ...engine.runner import RunEnded, TrainingRun

    started = time.monotonic()
    run = TrainingRun(config, resume=resume, progress_bars=True)  # datasets' and transformers' bars, on stderr
    caught: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        caught.append(signum)
        run.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNAL_EXIT}
    summary = _Summary()
    report = err if json_lines else out
    told_resume = False
    try:
        run.start()
        while True:
            message = run.events.get()
            if not told_resume and run.resumed is not None:
                told_resume = _tell_resume(run.run_id, run.resumed, report)
            if isinstance(message, RunEnded):
                break
            summary.add(message)
            if json_lines:
                write_records([event_record(message)], EVENT_COLUMNS, "jsonl", out, ascii_only=True)
            else:
                out.write(event_block(message).plain + "\n")
            out.flush()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    run.join()
    if run.world is not None and not run.world.is_main:
        # A rank other than 0 of a multi-process run: rank 0 prints the run; a failure here is this rank's own.
        if message.status is RunStatus.FAILED:
            raise TwoTierError(
                f"rank {run.world.rank}: {message.error or 'training failed'}", exit_code=message.exit_code
            )
        return SIGNAL_EXIT[signal.Signals(caught[0])] if caught else 0
    if message.run_id is not None:
        took = time.monotonic() - started
        report.write(summary.line(message, config.ledger, took, run.resumed) + "\n")
    if message.status is RunStatus.FAILED:
        raise TwoTierError(message.error or "training failed", exit_code=message.exit_code)
    if caught:
        return SIGNAL_EXIT[signal.Signals(caught[0])]
    return _report_verdict(thresholds or Thresholds(), summary, report)


def _tell_resume(run_id: str, resumed: Resumed, report: TextIO) -> bool:
    report.write(f"resuming run {run_id} from step {resumed.step} ({resumed.superseded} later events superseded)\n")
    report.flush()
    return True


def _report_verdict(thresholds: Thresholds, summary: _Summary, report: TextIO) -> int:
    checks = thresholds.verdict(summary.last_full, summary.first_nan)
    if not checks:
        return 0
    failed = [text for passed, text in checks if not passed]
    if failed:
        report.write(f"✖ verdict: FAIL (exit {VERDICT_EXIT}): " + "; ".join(failed) + "\n")
        return VERDICT_EXIT
    report.write("✔ verdict: pass: " + "; ".join(text for _, text in checks) + "\n")
    return 0
