"""The run picker: every run in the ledger with its status, start, steps and final val loss (`query.run_summaries`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable

from ....store import LedgerReader
from ....store.query import RunSummary, run_summaries
from ....store.queue import queued
from ...render import fmt_clock, fmt_loss, fmt_steps
from ...text import printable


def run_cells(summary: RunSummary, current: str | None, position: int | None = None) -> list[Text]:
    """A run's row; `position`: its place in the daemon's queue, for a queued run."""
    run = summary.run
    mark = "▶" if run.id == current else " "
    return [
        Text(mark),
        Text(summary.status if position is None else f"{summary.status} #{position}"),
        Text(fmt_clock(run.started_at)),
        Text(fmt_steps(run.last_step, run.max_steps), justify="right"),
        Text(fmt_loss(summary.final_val_loss), justify="right"),
        Text(run.id),
        Text(printable(run.name)),
    ]


class RunPicker(ModalScreen[str | None]):
    """Enter shows the chosen run; Escape keeps the current one."""

    DEFAULT_CSS = """
    RunPicker {
        align: center middle;
    }
    RunPicker > DataTable {
        width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        background: $surface;
    }
    """

    BINDINGS = [Binding("escape,q", "dismiss(None)", "Cancel")]

    @dataclass
    class Loaded(Message):
        summaries: list[RunSummary]
        positions: dict[str, int]

    def __init__(self, ledger: Path, current: str | None, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.ledger, self.current, self.clock = ledger, current, clock

    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(cursor_type="row")
        table.border_title = "runs · Enter shows one · Escape cancels"
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(" ", "status", "started", "steps", "val loss", "id", "name")
        table.loading = True
        # The app's worker: a failed read reaches the app's one error handler.
        self.app.run_worker(self._load, thread=True, exit_on_error=False, group="read")

    def _load(self) -> None:
        with LedgerReader(self.ledger) as reader:
            positions = {run.id: index for index, run in enumerate(queued(reader), start=1)}
            self.post_message(self.Loaded(run_summaries(reader, now=self.clock()), positions))

    def on_run_picker_loaded(self, message: Loaded) -> None:
        table = self.query_one(DataTable)
        table.loading = False
        for summary in message.summaries:
            table.add_row(*run_cells(summary, self.current, message.positions.get(summary.run.id)), key=summary.run.id)
        table.focus()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        self.dismiss(message.row_key.value)
