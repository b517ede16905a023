"""`twotier-tui`'s app: it tails a run's ledger and shows it, and owns the training run when it trains here.

What it shows always comes from the ledger, read in a worker thread; an in-process run is only
started, paused, stopped and waited for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Footer
from textual.worker import get_current_worker

from ..store import LedgerReader, RunStatus, TwoTierError
from .tailer import CHUNK, Poll, Tail
from .text import printable
from .training import EngineEnded, EngineStarted, InProcessRun
from .widgets.confirm import Confirm
from .widgets.eval_detail import EvalDetail
from .widgets.eval_table import EvalTable
from .widgets.example_pane import ExamplePane
from .widgets.help_screen import HelpScreen
from .widgets.loss_chart import LossChart
from .widgets.run_header import RunHeader
from .widgets.run_picker import RunPicker

if TYPE_CHECKING:
    from ..engine.config import Config
    from ..engine.resume import ResumePoint

POLL_S = 0.3
HANGUP_EXIT = 129


@dataclass
class Polled(Message):
    """One poll of the ledger: everything new, applied to the screen as one refresh."""

    generation: int
    poll: Poll


class TwoTierApp(App[int]):
    """The run's header, example pane, loss sparklines and full-eval table; keys in the footer."""

    CSS_PATH = "app.tcss"
    TITLE = "twotier"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    read_chunk = CHUNK  # events per ledger read while catching up with a long run
    BINDINGS = [
        Binding("p", "pause", "Pause/Resume"),
        Binding("x", "stop", "Stop"),
        Binding("f", "follow", "Follow"),
        Binding("r", "runs", "Runs"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, ledger: Path, run_ref: str = "latest", *, config: Config | None = None,
                 resume: ResumePoint | None = None, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        super().__init__()
        self.ledger = ledger
        self.run_ref = run_ref
        self.clock = clock
        self.engine = InProcessRun(config, self.post_message, resume) if config is not None else None
        self.run_id: str | None = None
        self.caught_up = False
        self._generation = 0
        self._read = 0
        self._quit_when_ended = False
        self._hung_up = False

    def compose(self) -> ComposeResult:
        yield RunHeader(clock=self.clock, id="header")
        yield ExamplePane(id="pane")
        with Horizontal(id="side"):
            yield LossChart(id="loss")
            yield EvalTable(id="evals")
        yield Footer()

    def on_mount(self) -> None:
        if self.engine is None:
            self.show_run(self.run_ref)
            return
        self.query_one(RunHeader).set_note("starting: loading the model and data…")
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hang_up)
        self.engine.start()

    def on_unmount(self) -> None:
        if self.engine is not None:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def show_run(self, run_ref: str) -> None:
        """Show another run (or the first): clear the screen's state and tail it from its start."""
        self._generation += 1
        self.run_id = None
        self.caught_up = False
        self._read = 0
        self.query_one(RunHeader).reset()
        self.query_one(ExamplePane).reset()
        self.query_one(LossChart).reset()
        self.query_one(EvalTable).reset()
        self._follow(self._generation, run_ref)

    @work(thread=True, exclusive=True, group="tail")
    def _follow(self, generation: int, run_ref: str) -> None:
        worker = get_current_worker()
        tail = Tail(self.ledger, run_ref, clock=self.clock, chunk=self.read_chunk,
                    probes_for_last=self.query_one(ExamplePane).max_blocks)  # fmt: skip
        try:
            seen = None
            while not worker.is_cancelled:
                poll = tail.poll()
                # An empty poll matters when it ends a catch-up (`more` turns False) or the run changed.
                if poll.events or (poll.run, poll.status, poll.more) != seen:
                    self.post_message(Polled(generation, poll))
                    seen = (poll.run, poll.status, poll.more)
                # A resumed run still reads as ended until its engine has reopened it in the ledger.
                if poll.ended and (self.engine is None or self.engine.ended is not None):
                    return
                if not poll.more:
                    worker.cancelled_event.wait(POLL_S)
        finally:
            tail.close()

    def on_polled(self, message: Polled) -> None:
        if message.generation != self._generation:
            return  # a poll of the run shown before a switch
        poll = message.poll
        header = self.query_one(RunHeader)
        if poll.run is not None:
            self.run_id = poll.run.id
        header.set_run(poll.run, poll.status)
        self._read += len(poll.events)
        header.set_reading(self._read if poll.more else None)
        if poll.opening is not None:
            self.query_one(LossChart).seed(poll.opening.history)
            self.query_one(EvalTable).add_evals(poll.opening.evals)
        if poll.events:
            header.add_events(poll.events)
            self.query_one(LossChart).add(poll.events)
            self.query_one(EvalTable).add_evals(event for event in poll.events if event.is_full)
        self.query_one(ExamplePane).add(poll.events, flush=not poll.more)
        self.caught_up = self.caught_up or not poll.more

    def on_engine_started(self, message: EngineStarted) -> None:
        self.query_one(RunHeader).set_note(None)
        self.show_run(message.run_id)
        self.refresh_bindings()

    def on_engine_ended(self, message: EngineEnded) -> None:
        header = self.query_one(RunHeader)
        if message.status is RunStatus.FAILED:
            header.set_note(f"training failed: {message.error}")
            self.notify(printable(message.error or "training failed"), title="training failed",
                        severity="error", timeout=30, markup=False)  # fmt: skip
        else:
            header.set_note(f"training {message.status.value}; q quits")
        self.refresh_bindings()
        if self._hung_up:
            # The run is stopped, checkpointed and flushed; with the terminal gone, Textual's shutdown
            # can block or spin on the dead tty, so leave at once.
            os._exit(HANGUP_EXIT)
        if self._quit_when_ended:
            self.exit(self.exit_status, return_code=self.exit_status)

    @property
    def exit_status(self) -> int:
        """What `twotier-tui` exits with: the run's end when it trained here, 129 after a hangup."""
        if self._hung_up:
            return HANGUP_EXIT
        ended = self.engine.ended if self.engine is not None else None
        return ended.exit_code if ended is not None else 0

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pause", "stop"):
            if self.engine is None:
                return False  # attached: this process does not own the run
            return True if self.engine.ended is None else None
        return True

    def action_pause(self) -> None:
        if self.engine is None:
            return
        if self.engine.paused:
            self.engine.resume()
            self.notify("resuming")
        else:
            self.engine.pause()
            self.notify("pausing after the current step")

    def action_stop(self) -> None:
        if self.engine is not None and self.engine.ended is None:
            question = "Stop the run? It finishes the current step, writes a checkpoint and flushes the ledger."
            self.push_screen(Confirm(question), self._stop_confirmed)

    def _stop_confirmed(self, yes: bool | None) -> None:
        if yes and self.engine is not None:
            self.engine.stop()
            self.query_one(RunHeader).set_note("stopping: finishing the step, writing a checkpoint…")

    def action_follow(self) -> None:
        pane = self.query_one(ExamplePane)
        pane.following = not pane.following

    def action_runs(self) -> None:
        self.push_screen(RunPicker(self.ledger, self.run_id, self.clock), self._run_chosen)

    def _run_chosen(self, run_id: str | None) -> None:
        if run_id is not None and run_id != self.run_id:
            self.show_run(run_id)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self.engine is not None and self.engine.ended is None:
            question = "A run trains in this process. Stop it (checkpoint + flush) and quit?"
            self.push_screen(Confirm(question), self._quit_confirmed)
        else:
            self.exit(self.exit_status, return_code=self.exit_status)

    def _quit_confirmed(self, yes: bool | None) -> None:
        if yes:
            self._stop_then_quit("stopping: writing a checkpoint and flushing the ledger, then quitting…")

    def _hang_up(self) -> None:
        # The SSH connection dropped: stop the run as cleanly as `q` would, without asking.
        self._hung_up = True
        self._stop_then_quit("hangup: stopping the run")

    def _stop_then_quit(self, note: str) -> None:
        if self.engine is None or self.engine.ended is not None:
            self.exit(self.exit_status, return_code=self.exit_status)
            return
        self._quit_when_ended = True
        self.engine.stop()
        self.query_one(RunHeader).set_note(note)

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        table = self.query_one(EvalTable)
        if message.data_table is not table or self.run_id is None or message.row_key.value is None:
            return
        event_id = int(message.row_key.value)
        self.push_screen(EvalDetail(self.ledger, self.run_id, event_id, table.previous_of(event_id)))


def make_app(config: Config | None = None, attach: Path | None = None, run_ref: str | None = None,
             clock: Callable[[], float] = time.time, resume: ResumePoint | None = None) -> TwoTierApp:  # fmt: skip
    """The app that trains `config` here (continuing `resume`, if given), or that shows run `run_ref`
    (default: latest) of ledger `attach`."""
    if config is not None:
        return TwoTierApp(Path(config.ledger), config=config, resume=resume, clock=clock)
    if attach is None:
        raise TypeError("make_app needs a config to train or a ledger to attach to")
    with LedgerReader(attach) as reader:  # a missing ledger or an unknown run is an error before the app opens
        resolved = reader.run(run_ref).id if run_ref is not None else "latest"
    return TwoTierApp(Path(attach), resolved, clock=clock)


def run_app(config: Config | None = None, attach: Path | None = None, run_ref: str | None = None,
            resume: ResumePoint | None = None) -> int:  # fmt: skip
    """Run the app in the foreground; returns the process exit status."""
    app = make_app(config=config, attach=attach, run_ref=run_ref, resume=resume)
    try:
        app.run()
    finally:
        ended = app.engine.stop_and_wait() if app.engine is not None else None
    if ended is not None and ended.status is RunStatus.FAILED:
        raise TwoTierError(ended.error or "training failed", exit_code=ended.exit_code)
    return app.return_code if app.return_code is not None else 0
