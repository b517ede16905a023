"""The example pane: fast logs and full evals as the headless blocks, newest at the bottom, bounded."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import events
from textual.reactive import reactive
from textual.widgets import RichLog

from ....store import StepEvent
from ...render import HEADLESS_RULE, event_block, event_line
from .in_place import ScrollsInPlace

MAX_BLOCKS = 200
COMPACT_BELOW = 12  # pane rows under which events are drawn in a line or two instead of a block
LINES_PER_SHOWN_BLOCK = 14  # a fast log's block, for how many of a burst's blocks will show
BLOCKS_PER_BURST = 3  # the newest events of a burst always get their block
# Blocks are bounded by line count; a block is about 16 lines, more when long texts wrap.
LINES_PER_BLOCK = 24
FOLLOWING = "following new events"
NOT_FOLLOWING = "NOT following (scrolled up): End or f follows"


def block_text(event: StepEvent, width: int) -> Text:
    """One event's block as the headless view prints it, with a rule as wide as the pane."""
    return event_block(event, rule="─" * min(len(HEADLESS_RULE), max(width, 1)))


class ExamplePane(ScrollsInPlace, RichLog):
    """A scrolling log that follows new events unless the user scrolled up, and says which."""

    DEFAULT_CSS = """
    ExamplePane {
        border-top: solid $accent;
        border-title-align: left;
        scrollbar-size-vertical: 1;
        overflow-y: scroll;
    }
    ExamplePane.-not-following {
        border-top: solid $warning;
    }
    """

    following = reactive(True)
    compact = reactive(False)
    """A line or two per event: the pane is too short for a block (an 80x24 terminal once evals show)."""

    def __init__(self, max_blocks: int = MAX_BLOCKS, **kwargs: Any) -> None:
        super().__init__(
            max_lines=max_blocks * LINES_PER_BLOCK,
            wrap=True,
            markup=False,
            highlight=False,
            auto_scroll=False,
            **kwargs,
        )
        self.max_blocks = max_blocks
        self._pending: deque[StepEvent] = deque(maxlen=max_blocks)
        self._shown: deque[StepEvent] = deque(maxlen=max_blocks)  # to draw again when the form changes
        self.newest: StepEvent | None = None

    def on_mount(self) -> None:
        self._show_title()

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        self.compact = 0 < self.size.height < COMPACT_BELOW

    def watch_compact(self) -> None:
        if self.is_mounted:
            self.clear()
            self._draw(list(self._shown))

    def add(self, events: Iterable[StepEvent], *, flush: bool = True) -> None:
        """Queue events; with `flush`, write the queue. While a long run is read, only its tail is drawn."""
        self._pending.extend(events)
        if self._pending:
            self.newest = self._pending[-1]
        if flush:
            burst = list(self._pending)
            self._pending.clear()
            self._shown.extend(burst)
            self._draw(burst)
            self._show_title()

    def _draw(self, events: list[StepEvent]) -> None:
        """Blocks for what will show; in a burst, the events scrolled past at once get a line each (a burst's
        cost is then a few blocks, however many events it holds), and every event does in compact form."""
        width = self.scrollable_content_region.width or len(HEADLESS_RULE)
        room = 0 if self.compact else max(BLOCKS_PER_BURST, self.size.height // LINES_PER_SHOWN_BLOCK + 1)
        for index, event in enumerate(events):
            shown = block_text(event, width) if index >= len(events) - room else event_line(event, width)
            self.write(shown, scroll_end=self.following)

    def reset(self) -> None:
        self._pending.clear()
        self._shown.clear()
        self.newest = None
        self.clear()
        self.following = True
        self._show_title()

    def _show_title(self) -> None:
        """The newest event stays named in the title even when its block's top is scrolled past."""
        newest = self.newest
        about = "examples"
        if newest is not None:
            about += f" · newest {'FULL EVAL' if newest.is_full else 'FAST LOG'} step {newest.step}"
        self.border_title = f"{about} · {FOLLOWING if self.following else NOT_FOLLOWING}"

    def watch_following(self, following: bool) -> None:
        self._show_title()
        self.set_class(not following, "-not-following")
        if following:
            self.scroll_end(animate=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolling away from the bottom stops following; coming back to it resumes.
        if new_value < old_value and new_value < self.max_scroll_y:
            self.following = False
        elif new_value >= self.max_scroll_y and new_value > old_value:
            self.following = True
