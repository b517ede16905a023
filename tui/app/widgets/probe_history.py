"""How one probe's answer evolved: its answer at every full eval, the words changed since the one before marked."""

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

from ....store import LedgerReader, ProbeResult
from ...render import answer_history, show


class ProbeHistory(ModalScreen[None]):
    """Opened from a full eval's probe list; Escape closes it."""

    DEFAULT_CSS = """
    ProbeHistory {
        align: center middle;
    }
    ProbeHistory > VerticalScroll {
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
        answers: list[tuple[int, ProbeResult]]

    def __init__(self, ledger: Path, run_id: str, probe_id: int) -> None:
        super().__init__()
        self.ledger, self.run_id, self.probe_id = ledger, run_id, probe_id

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = f"probe #{self.probe_id} · its answer at each full eval · Escape closes"
            yield Static(Text("loading…"), id="history")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        self.app.run_worker(self._load, thread=True, exit_on_error=False, group="read")

    def _load(self) -> None:
        with LedgerReader(self.ledger) as reader:
            self.post_message(self.Loaded(reader.probe_answers(self.run_id, self.probe_id)))

    def on_probe_history_loaded(self, message: Loaded) -> None:
        if not message.answers:
            self.query_one("#history", Static).update(Text("no answers recorded for this probe"))
            return
        probe = message.answers[-1][1]
        text = Text("📝 PROMPT\n", style="bold")
        text.append(show(probe.prompt, None))
        text.append("\n\n✅ GOLDEN\n" if probe.golden is not None else "\n\n(no golden: answered only)\n", style="bold")
        text.append(show(probe.golden or "", None))
        text.append("\n\n🤖 ANSWERS (words changed since the eval before in reverse video)\n", style="bold")
        text.append_text(answer_history(message.answers))
        self.query_one("#history", Static).update(text)
