"""The run picker: every run in the ledger with its status, start, steps and final val loss."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable

from ...store import Kind, LedgerError, LedgerReader, RunInfo
from ..blocks import fmt_loss
from ..text import printable


@dataclass(frozen=True)
class RunRow:
    run: RunInfo
    status: str
    final_val_loss: float | None

    def cells(self, current: str | None) -> list[Text]:
        run = self.run
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started_at))
        steps = f"{run.last_step}/{run.max_steps or '?'}"
        mark = "▶" if run.id == current else " "
        return [Text(mark), Text(self.status), Text(started), Text(steps, justify="right"),
                Text(fmt_loss(self.final_val_loss), justify="right"), Text(run.id),
                Text(printable(run.name))]  # fmt: skip


def read_runs(ledger: Path, now: float) -> list[RunRow]:
    """Every run, newest first, with the val loss of its last full eval."""
    with LedgerReader(ledger) as reader:
        rows = []
        for run in reader.runs():
            last = None
            for last in reader.iter_events(run.id, kind=Kind.FULL):
                pass
            rows.append(RunRow(run, reader.run_status(run, now), last.val_loss if last else None))
        return rows


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
        rows: list[RunRow] | None
        error: str | None = None

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
        self._load()

    @work(thread=True)
    def _load(self) -> None:
        try:
            self.post_message(self.Loaded(read_runs(self.ledger, self.clock())))
        except LedgerError as err:
            self.post_message(self.Loaded(None, str(err)))

    def on_run_picker_loaded(self, message: Loaded) -> None:
        table = self.query_one(DataTable)
        table.loading = False
        if message.rows is None:
            self.notify(printable(message.error or ""), severity="error", markup=False)
            return
        for row in message.rows:
            table.add_row(*row.cells(self.current), key=row.run.id)
        table.focus()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        self.dismiss(message.row_key.value)
