"""One full eval in full (as `render.eval_detail` draws it) and its probes; Enter on a probe shows its history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ....store import LedgerReader, StepEvent
from ...render import eval_detail, flip_mark, probe_line
from .probe_history import ProbeHistory


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
    EvalDetail #probes {
        height: auto;
        border: none;
    }
    """

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    @dataclass
    class Loaded(Message):
        event: StepEvent
        previous: StepEvent | None

    def __init__(self, ledger: Path, event_id: int, previous_id: int | None) -> None:
        super().__init__()
        self.ledger, self.event_id, self.previous_id = ledger, event_id, previous_id
        self.run_id: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "full eval · Enter on a probe: its answers eval after eval · Escape closes"
            yield Static(Text("loading…"), id="detail")
            yield OptionList(id="probes")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        # The app's worker: a failed read reaches the app's one error handler.
        self.app.run_worker(self._load, thread=True, exit_on_error=False, group="read")

    def _load(self) -> None:
        with LedgerReader(self.ledger) as reader:
            event = reader.event(self.event_id, with_probes=True)
            previous = None if self.previous_id is None else reader.event(self.previous_id, with_probes=True)
        self.post_message(self.Loaded(event, previous))

    def on_eval_detail_loaded(self, message: Loaded) -> None:
        event, previous = message.event, message.previous
        self.run_id = event.run_id
        self.query_one("#detail", Static).update(eval_detail(event, previous.step if previous else None))
        before = {probe.probe_id: probe for probe in previous.probes} if previous else {}
        probes = self.query_one("#probes", OptionList)
        probes.add_options(Option(probe_line(p, flip_mark(p, before)), id=str(p.probe_id)) for p in event.probes)
        if event.probes:
            probes.focus()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        if self.run_id is not None and message.option.id is not None:
            self.app.push_screen(ProbeHistory(self.ledger, self.run_id, int(message.option.id)))
