"""One full eval in full (as `render.eval_detail` draws it): texts whole, differences marked, the probe set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from ....store import LedgerReader
from ...render import eval_detail


class EvalDetail(ModalScreen[None]):
    """Opened from the eval table; Escape closes it."""

    DEFAULT_CSS = """
    EvalDetail {
        align: center middle;
    }
    EvalDetail > VerticalScroll {
        width: 100%;
        height: 100%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    @dataclass
    class Loaded(Message):
        detail: Text

    def __init__(self, ledger: Path, event_id: int, previous_id: int | None) -> None:
        super().__init__()
        self.ledger, self.event_id, self.previous_id = ledger, event_id, previous_id

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "full eval · Escape closes"
            yield Static(Text("loading…"), id="detail")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        # The app's worker: a failed read reaches the app's one error handler.
        self.app.run_worker(self._load, thread=True, exit_on_error=False, group="read")

    def _load(self) -> None:
        with LedgerReader(self.ledger) as reader:
            event = reader.event(self.event_id, with_probes=True)
            previous = None if self.previous_id is None else reader.event(self.previous_id, with_probes=True)
        detail = eval_detail(event, previous.probes if previous else (), previous.step if previous else None)
        self.post_message(self.Loaded(detail))

    def on_eval_detail_loaded(self, message: Loaded) -> None:
        self.query_one("#detail", Static).update(message.detail)
