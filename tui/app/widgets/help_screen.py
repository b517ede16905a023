"""The keys and what the screen shows, for a user who pressed `?`."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
twotier: a fast log every log_steps, a full eval every eval_steps, all kept in the ledger.

Keys
  p        pause / unpause the run shown, wherever it trains (here, headless, under the daemon)
  x        stop it (asks first): the step ends, a checkpoint is written, the ledger flushed
           (both are requests through the ledger: the header shows one as pending until the run acts)
  f        follow new events on / off (scrolling up also stops following; End resumes)
  r        switch run: every run in the ledger, finished ones included
  Tab      move between the example pane and the full-eval table
  s / o    in the table: sort by the next column / flip the order
  Enter    in the table: open that full eval (example, golden, output, probe set)
  ?        this help          q   quit (asks to stop a run that trains here)

Status
  queued, running, paused, finished, stopped, failed, cancelled; stale means the writer's heartbeat
  stopped (its process died without closing the run).

Small terminals
  Below about 12 rows for the examples, each event takes a line or two (step, prompt, golden, loss).

Full evals
  gap = val loss - mean train loss since the previous eval; ✅ within gap_threshold, ⚠️ above.
  In an eval's probe set, ↑ marks an example that now matches, ↓ one that no longer does.
"""


class HelpScreen(ModalScreen[None]):
    """Escape, q or ? closes it."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 92;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "help · Escape closes"
            yield Static(Text(HELP))
