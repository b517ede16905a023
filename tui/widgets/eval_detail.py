"""One full eval in full: example, golden and model output with their differences marked, and the probe set."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from ...store import LedgerReader, ProbeResult, StepEvent
from ..blocks import fmt_gap, fmt_loss, gap_mark
from ..text import printable

DIFF_STYLE = "bold reverse"


def diff_texts(golden: str, output: str) -> tuple[Text, Text]:
    """Golden and output with the characters that differ shown in reverse video (visible without colour)."""
    golden_text, output_text = Text(), Text()
    matcher = difflib.SequenceMatcher(None, golden, output, autojunk=False)
    for tag, g0, g1, o0, o1 in matcher.get_opcodes():
        style = "" if tag == "equal" else DIFF_STYLE
        golden_text.append(printable(golden[g0:g1]), style=style)
        output_text.append(printable(output[o0:o1]), style=style)
    return golden_text, output_text


def flip_mark(probe: ProbeResult, before: dict[int, ProbeResult]) -> str:
    """How this probe's MATCH changed since the previous eval: ↑ newly right, ↓ newly wrong."""
    previous = before.get(probe.probe_id)
    if previous is None or previous.match == probe.match:
        return "  "
    return "↑ " if probe.match else "↓ "


@dataclass(frozen=True)
class LoadedEval:
    """What the detail shows, read off the UI thread."""

    event: StepEvent
    previous_step: int | None
    previous_probes: tuple[ProbeResult, ...]


def detail_text(loaded: LoadedEval) -> Text:
    event = loaded.event
    golden, output = diff_texts(event.golden, event.model_output or "")
    text = Text(f"🔍 FULL EVAL - Step {event.step}  ", style="bold magenta")
    text.append("✅ MATCH" if event.match else "❌ NO MATCH", style="bold green" if event.match else "bold red")
    text.append("\n\n📝 PROMPT\n", style="bold")
    text.append(printable(event.prompt))
    text.append(f"\n\n✅ GOLDEN ({event.golden_tokens} tokens)\n", style="bold")
    text.append_text(golden)
    text.append(f"\n\n🤖 MODEL ({event.output_tokens} tokens)\n", style="bold")
    text.append_text(output)
    text.append("\n(differences in reverse video)\n\n", style="dim")
    text.append(f"📉 loss on this example {fmt_loss(event.loss)}\n")
    text.append(f"📊 train {fmt_loss(event.train_loss_mean)} | val {fmt_loss(event.val_loss)}"
                f" | gap {fmt_gap(event.gap)} {gap_mark(event.gap_ok)}\n")  # fmt: skip
    text.append_text(probe_text(event.probes, loaded.previous_probes, loaded.previous_step))
    return text


def probe_text(probes: tuple[ProbeResult, ...], previous: tuple[ProbeResult, ...], previous_step: int | None) -> Text:
    before = {probe.probe_id: probe for probe in previous}
    matched = sum(probe.match for probe in probes)
    since = f"since step {previous_step}" if previous_step is not None else "(first eval: nothing to compare)"
    text = Text(f"\n🎯 PROBE SET: {matched}/{len(probes)} exact · ↑/↓ flipped {since}\n", style="bold")
    for probe in probes:
        flip = flip_mark(probe, before)
        text.append(flip, style="bold yellow" if flip.strip() else "")
        text.append("✅ " if probe.match else "❌ ")
        text.append(f"#{probe.probe_id:<3} ", style="dim")
        text.append(printable(probe.prompt))
        text.append(" → ", style="dim")
        text.append(printable(probe.model_output))
        if not probe.match:
            text.append("  (golden ", style="dim")
            text.append(printable(probe.golden))
            text.append(")", style="dim")
        text.append("\n")
    return text


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
        loaded: LoadedEval

    def __init__(self, ledger: Path, run_id: str, event_id: int, previous_id: int | None) -> None:
        super().__init__()
        self.ledger, self.run_id, self.event_id, self.previous_id = ledger, run_id, event_id, previous_id

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "full eval · Escape closes"
            yield Static(Text("loading…"), id="detail")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        self._load()

    @work(thread=True)
    def _load(self) -> None:
        with LedgerReader(self.ledger) as reader:
            event = reader.events_after(self.run_id, self.event_id - 1, limit=1, with_probes=True)[0]
            previous_step, previous_probes = None, ()
            if self.previous_id is not None:
                previous = reader.events_after(self.run_id, self.previous_id - 1, limit=1)[0]
                previous_step, previous_probes = previous.step, reader.probes(self.previous_id)
        self.post_message(self.Loaded(LoadedEval(event, previous_step, previous_probes)))

    def on_eval_detail_loaded(self, message: Loaded) -> None:
        self.query_one("#detail", Static).update(detail_text(message.loaded))
