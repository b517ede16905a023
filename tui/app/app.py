"""`twotier-tui`'s app: it tails a run's ledger and shows it, and owns the training run when it trains here.

What it shows always comes from the ledger, read in a worker thread; a run trained here (an engine
`TrainingRun`, whose thread imports torch, so the app opens first) is only started, paused, stopped and
waited for. Every failure of a worker reaches one handler, `on_worker_state_changed`, which shows it.
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
from textual.worker import Worker, WorkerState, get_current_worker

from ...store import LedgerReader, RunStatus, TwoTierError
from ...store.control import request_control
from ...store.records import Action
from ...store.tail import CHUNK, Poll, Tail
from ..text import printable
from .widgets.confirm import Confirm
from .widgets.eval_detail import EvalDetail
from .widgets.eval_table import EvalTable
from .widgets.example_pane import ExamplePane
from .widgets.help_screen import HelpScreen
from .widgets.loss_chart import LossChart
from .widgets.run_header import RunHeader
from .widgets.run_picker import RunPicker

if TYPE_CHECKING:
    from ...engine.config import Config
    from ...engine.resume import ResumePoint
    from ...engine.runner import RunEnded, TrainingRun

POLL_S = 0.3
STARTING = "starting: recording the run…"  # until the run is in the ledger; its phase line says the rest
HANGUP_EXIT = 129


@dataclass
class Polled(Message):
    """One poll of the ledger: everything new, applied to the screen as one refresh."""

    generation: int
    poll: Poll


@dataclass
class EngineEnded(Message):
    """The run trained in this process ended."""

    ended: RunEnded


class TwoTierApp(App[int]):
    """The run's header, example pane, loss sparklines and full-eval table; keys in the footer."""

    CSS_PATH = "app.tcss"
    TITLE = "twotier"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    read_chunk = CHUNK  # events per ledger read while catching up with a long run
    BINDINGS = [
        Binding("p", "pause", "Pause/Unpause"),
        Binding("x", "stop", "Stop"),
        Binding("f", "follow", "Follow"),
        Binding("r", "runs", "Runs"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        ledger: Path,
        run_ref: str | None = None,
        *,
        engine: TrainingRun | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Show run `run_ref` of `ledger` (None: the newest run, moving on to each newer one), or the run
        `engine` trains in this process."""
        super().__init__()
        self.ledger = ledger
        self.run_ref = engine.run_id if engine is not None else run_ref
        self.clock = clock
        self.engine = engine
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
        self.show_run(self.run_ref)
        if self.engine is not None:
            self.query_one(RunHeader).set_note(STARTING)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hang_up)
            self.engine.start()
            self._watch_engine(self.engine)

    def on_unmount(self) -> None:
        if self.engine is not None:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def show_run(self, run_ref: str | None) -> None:
        """Show another run (or the first): clear the screen's state and tail it from its start."""
        self._generation += 1
        self.run_id = None
        self.caught_up = False
        self._read = 0
        self._reset_widgets()
        self._follow(self._generation, run_ref)

    def _reset_widgets(self) -> None:
        self.query_one(RunHeader).reset()
        self.query_one(ExamplePane).reset()
        self.query_one(LossChart).reset()
        self.query_one(EvalTable).reset()

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def _follow(self, generation: int, run_ref: str | None) -> None:
        worker = get_current_worker()
        tail = Tail(
            self.ledger,
            run_ref,
            clock=self.clock,
            chunk=self.read_chunk,
            probes_for_last=self.query_one(ExamplePane).max_blocks,
        )
        try:
            seen = None
            while not worker.is_cancelled:
                poll = tail.poll()
                # An empty poll matters when it ends a catch-up (`more` turns False) or the run changed.
                if poll.events or (poll.run, poll.status, poll.more) != seen:
                    self.post_message(Polled(generation, poll))
                    seen = (poll.run, poll.status, poll.more)
                # A resumed run still reads as ended until its engine has reopened it in the ledger; a
                # viewer that follows the newest run keeps looking for the next one.
                if poll.ended and not tail.follows_newest and (self.engine is None or self.engine.ended is not None):
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
        if poll.switched_from is not None:
            self._read = 0
            self._reset_widgets()
            name = poll.run.name if poll.run is not None else "?"
            self.notify(printable(f"a newer run started: now showing {name}"), markup=False)
        if poll.run is not None:
            self.run_id = poll.run.id
            if header.note == STARTING:
                header.set_note(None)
        steerable = self.steerable
        header.set_run(poll.run, poll.status, poll.pending)
        if self.steerable != steerable:
            self.refresh_bindings()  # p and x come and go with a live run (redrawing the footer is not free)
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

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed read (a damaged ledger, a newer schema…) is shown: in the header and a notice."""
        if event.state is not WorkerState.ERROR or event.worker.error is None:
            return
        error = event.worker.error
        message = str(error) if isinstance(error, TwoTierError) else f"{type(error).__name__}: {error}"
        self.query_one(RunHeader).set_note(f"cannot read the ledger: {message}")
        self.notify(printable(message), title="cannot read the ledger", severity="error", timeout=30, markup=False)

    @work(thread=True, group="engine", exit_on_error=False)
    def _watch_engine(self, engine: TrainingRun) -> None:
        from ...engine.runner import RunEnded

        # The app shows the ledger; this queue is drained only to learn how the run ended (and that it resumed).
        told = False
        while not isinstance(message := engine.events.get(), RunEnded):
            if not told and engine.resumed is not None:
                told = True
                resumed = engine.resumed
                note = f"resuming run {engine.run_id} from step {resumed.step} ({resumed.superseded} later events superseded)"
                self.call_from_thread(self.notify, note, markup=False)
        engine.join()
        self.post_message(EngineEnded(message))

    def on_engine_ended(self, message: EngineEnded) -> None:
        header = self.query_one(RunHeader)
        ended = message.ended
        if ended.status is RunStatus.FAILED:
            header.set_note(f"training failed: {ended.error}")
            self.notify(
                printable(ended.error or "training failed"),
                title="training failed",
                severity="error",
                timeout=30,
                markup=False,
            )
        else:
            header.set_note(f"training {ended.status.value}; q quits")
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

    @property
    def steerable(self) -> bool:
        """The shown run can be paused and stopped: it is live (its process is there), or it trains here."""
        header = self.query_one(RunHeader)
        if header.run is not None and header.run.status.is_live and header.status != "stale":
            return True
        return self.engine is not None and self.engine.ended is None and header.run is None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pause", "stop"):
            return self.steerable  # hidden, not just greyed, while there is nothing to steer
        return True

    def action_pause(self) -> None:
        run = self.query_one(RunHeader).run
        if run is not None and run.status.is_live:
            self._steer(Action.UNPAUSE if run.status is RunStatus.PAUSED else Action.PAUSE)

    def action_stop(self) -> None:
        if self.steerable:
            question = "Stop the run? It finishes the current step, writes a checkpoint and flushes the ledger."
            self.push_screen(Confirm(question), self._stop_confirmed)

    def _stop_confirmed(self, yes: bool | None) -> None:
        if not yes:
            return
        if self.query_one(RunHeader).run is None and self.engine is not None:
            self.engine.stop()  # still loading: nothing in the ledger to ask yet
        else:
            self._steer(Action.STOP)

    def _steer(self, action: Action) -> None:
        """Ask the run through the ledger, the one way a run is steered from anywhere (the run trained here too);
        the header shows the request as pending until the run has acted on it."""
        run_id = self.run_id
        if run_id is None:
            return

        def ask() -> None:
            request_control(self.ledger, run_id, action)

        self.run_worker(ask, thread=True, exit_on_error=False, group="steer")
        self.notify(f"{action.value} requested: the run acts at its next step end")

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
        self.push_screen(EvalDetail(self.ledger, event_id, table.previous_of(event_id)))


def make_app(
    config: Config | None = None,
    attach: Path | None = None,
    run_ref: str | None = None,
    clock: Callable[[], float] = time.time,
    resume: ResumePoint | None = None,
) -> TwoTierApp:
    """The app that trains `config` here (continuing `resume`, if given), or that shows run `run_ref` of
    ledger `attach` (without one: the newest run, and each newer one as it starts)."""
    if config is not None:
        from ...engine.runner import TrainingRun  # no torch yet: the run's thread imports it

        return TwoTierApp(Path(config.ledger), engine=TrainingRun(config, resume=resume), clock=clock)
    if attach is None:
        raise TypeError("make_app needs a config to train or a ledger to attach to")
    with LedgerReader(attach) as reader:  # a missing ledger or an unknown run is an error before the app opens
        resolved = reader.run(run_ref).id if run_ref is not None else None
    return TwoTierApp(Path(attach), resolved, clock=clock)


def run_app(
    config: Config | None = None,
    attach: Path | None = None,
    run_ref: str | None = None,
    resume: ResumePoint | None = None,
) -> int:
    """Run the app in the foreground; returns the process exit status."""
    app = make_app(config=config, attach=attach, run_ref=run_ref, resume=resume)
    try:
        app.run()
    finally:
        engine = app.engine
        if engine is not None and engine.started:
            # However the app ended, leave no run mid-step: stop it the clean way and wait for its end.
            engine.stop()
            engine.join()
    ended = app.engine.ended if app.engine is not None else None
    if ended is not None and ended.status is RunStatus.FAILED:
        raise TwoTierError(ended.error or "training failed", exit_code=ended.exit_code)
    return app.return_code if app.return_code is not None else 0
