"""The app's header: which run, how it stands, and how fast it goes, from the ledger's own numbers."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import Static

from ....store import RunInfo, StepEvent
from ....store.records import ControlRequest
from ...render import fmt_duration, fmt_elapsed, fmt_phase, fmt_steps, fmt_tokens_per_s
from ...text import printable

RATE_WINDOW = 20
BAR_WIDTH = 24
STATUS_MARKS = {
    "running": ("● running", "bold green"),
    "paused": ("⏸ paused", "bold yellow"),
    "finished": ("✔ finished", "bold blue"),
    "stopped": ("■ stopped", "bold yellow"),
    "failed": ("✖ failed", "bold red"),
    "stale": ("? stale (no heartbeat)", "bold magenta"),
    "waiting": ("… waiting for the run", "bold"),
}


def progress_bar(step: int, total: int | None, width: int = BAR_WIDTH) -> str:
    """A bar that reads without colour: filled and empty cells are different characters."""
    if not total:
        return "░" * width
    filled = min(width, round(width * step / total))
    return "█" * filled + "░" * (width - filled)


class RunHeader(Static):
    """Run name, model, status, step / total with a bar, steps/s, tokens/s, elapsed and ETA."""

    DEFAULT_CSS = """
    RunHeader {
        height: auto;
        padding: 0 1;
        background: $panel;
    }
    """

    def __init__(self, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        self.run: RunInfo | None = None
        self.status = "waiting"
        self.note: str | None = None
        self.reading: int | None = None
        self.latest: StepEvent | None = None
        self.pending: list[ControlRequest] = []
        self._lines = -1
        self._recent: deque[tuple[int, float]] = deque(maxlen=RATE_WINDOW)
        self._restarted = False

    def on_mount(self) -> None:
        # Elapsed time and staleness move with the clock even when no event arrives.
        self.set_interval(1.0, self.show)
        self.show()

    def reset(self) -> None:
        """Forget the run shown (the note stays: it is about the app, not the run)."""
        self.run, self.status, self.latest, self.reading, self.pending = None, "waiting", None, None, []
        self._recent.clear()
        self._restarted = False
        self.show()

    def set_run(self, run: RunInfo | None, status: str, pending: Sequence[ControlRequest] = ()) -> None:
        self.run, self.status, self.pending = run, status, list(pending)
        self.show()

    def set_note(self, note: str | None) -> None:
        """A line under the numbers: what the app is doing (starting, stopping) or how the run failed."""
        self.note = note
        self.show()

    def set_reading(self, count: int | None) -> None:
        """While a long run is first read: how many events so far (None once caught up)."""
        self.reading = count
        self.show()

    def add_events(self, events: Iterable[StepEvent]) -> None:
        for event in events:
            if self._recent and event.elapsed_s < self._recent[-1][1]:
                # A resumed run: its new process counts time from its own start, so the pace is taken
                # from the new process's events alone.
                self._recent.clear()
                self._restarted = True
            self.latest = event
            self._recent.append((event.step, event.elapsed_s))
        self.show()

    @property
    def steps_per_s(self) -> float | None:
        """Over the last events seen: the recent pace, not the average since a slow start."""
        if len(self._recent) >= 2:
            (first_step, first_s), (last_step, last_s) = self._recent[0], self._recent[-1]
            if last_s > first_s:
                return (last_step - first_step) / (last_s - first_s)
        if self.latest is not None and self.latest.elapsed_s > 0 and not self._restarted:
            return self.latest.step / self.latest.elapsed_s
        return None

    def show(self) -> None:
        """Redraw; a new layout only when the header gains or loses a line (a note, an error), not at every poll."""
        text = self.render_text()
        lines = text.plain.count("\n")
        self.update(text, layout=lines != self._lines)
        self._lines = lines

    def render_text(self) -> Text:
        run, event = self.run, self.latest
        label, style = STATUS_MARKS.get(self.status, (self.status, "bold"))
        text = Text("twotier", style="bold")
        if run is not None:
            text.append("  ")
            text.append(printable(run.name), style="bold")
            text.append(f"  ·  model {printable(run.model)}  ·  ")
        else:
            text.append("  ·  ")
        text.append(label, style=style)
        if run is not None and run.phase and run.status.is_live and self.status != "stale":
            text.append("  ·  ")
            text.append(printable(fmt_phase(run.phase, self._clock())), style="bold yellow")
        # A pause or stop lands between fast logs: the run's own step, once it says so, is past its newest event.
        step = max(event.step if event is not None else 0, run.last_step if run is not None else 0)
        total = run.max_steps if run is not None else None
        percent = f"{100 * step / total:3.0f}%" if total else "   -"
        text.append(f"\nstep {fmt_steps(step, total)}  ")
        text.append(progress_bar(step, total), style="green")
        text.append(f" {percent}")
        text.append("\n" + "  ·  ".join(self._rates(step, total)))
        error = run.error if run is not None and run.error else None
        reading = f"reading the run from the ledger: {self.reading:,} events so far…" if self.reading else None
        pending = self._pending_text()
        for line, line_style in (
            (reading, "italic"),
            (pending, "bold yellow"),
            (self.note, "italic"),
            (error, "bold red"),
        ):
            if line:
                text.append("\n" + printable(line), style=line_style)
        return text

    def _pending_text(self) -> str | None:
        """A request the run has not acted on yet: shown until the run confirms it at its next step end."""
        if not self.pending:
            return None
        last = self.pending[-1]
        waited = fmt_duration(self._clock() - last.requested_at)
        return f"⏳ {last.action.value} requested by {last.requested_by} {waited} ago: pending until the step ends"

    def _rates(self, step: int, total: int | None) -> list[str]:
        rate = self.steps_per_s
        event = self.latest
        live = self.run is not None and self.run.status.is_live and self.status != "stale"
        tokens = event.tokens_per_s if event is not None else None
        eta = (total - step) / rate if live and rate and total else None
        return [
            "-- steps/s" if rate is None else f"{rate:.2f} steps/s",
            fmt_tokens_per_s(tokens),
            fmt_elapsed(*self._elapsed(live)),
            f"ETA {fmt_duration(eta)}",
        ]

    def _elapsed(self, live: bool) -> tuple[float | None, float | None]:
        """The run's elapsed time and how much of it went to loading (None when not recorded)."""
        run = self.run
        if run is None:
            return None, None
        loaded = run.trained_from if run.trained_from is not None else (self._clock() if live and run.phase else None)
        loading = loaded - run.started_at if loaded is not None else None
        if live:
            return self._clock() - run.started_at, loading
        # An ended run: its events' elapsed time counts training only; the loading came before it.
        training = self.latest.elapsed_s if self.latest is not None else None
        return (None if training is None else training + (loading or 0.0)), loading
