"""Scrolling widgets whose outer size the layout sets: new content repaints them, it does not re-lay the screen."""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive


class ScrollsInPlace:
    """Mix in before a scrolling widget (RichLog, DataTable) that keeps its vertical scrollbar (overflow-y:
    scroll) and gets its size from the layout: a change of its virtual size then needs its own repaint and
    its scrollbar's, never a layout of the whole screen, which at every poll was most of the refresh time."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        self._scroll_update(size)  # type: ignore[attr-defined]  # a Widget's, through the class mixed into
