"""The full-eval history: one row per full eval, sortable by any column, a row opens that eval."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ....store import StepEvent
from ...render import EVAL_COLUMNS
from .in_place import ScrollsInPlace


@dataclass(frozen=True)
class Cell:
    """A cell that shows `text` and sorts by `value` (missing values sort last)."""

    text: str
    value: Any

    def __rich__(self) -> Text:
        return Text(self.text, justify="right", no_wrap=True)

    def sort_key(self) -> tuple[bool, Any]:
        return (self.value is None, self.value if self.value is not None else 0)


def eval_cells(event: StepEvent) -> list[Cell]:
    return [Cell(column.text(event), column.value(event)) for column in EVAL_COLUMNS]


class EvalTable(ScrollsInPlace, DataTable):
    """In step order, newest last, by default; `s` sorts by the next column, `o` flips the order.

    In the default order a new eval is appended, so the cost of an update does not grow with the
    run; in any other order the rows are sorted again when an eval arrives.
    """

    DEFAULT_CSS = """
    EvalTable {
        border-top: solid $accent;
        border-title-align: left;
        overflow-y: scroll;
    }
    """

    BINDINGS = [
        Binding("s", "sort_next", "Sort col"),
        Binding("o", "flip_order", "Order"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.sort_column = "step"
        self.descending = False
        # Event ids in step order, to find the eval before a given one.
        self._by_step: list[tuple[int, int]] = []

    def on_mount(self) -> None:
        for column in EVAL_COLUMNS:
            self.add_column(column.header, key=column.key)
        self._show_sort()
        self.set_class(self.row_count == 0, "-empty")

    @property
    def in_arrival_order(self) -> bool:
        return self.sort_column == "step" and not self.descending

    def add_evals(self, events: Iterable[StepEvent]) -> None:
        was_at_newest = self.cursor_row >= self.row_count - 1
        added = False
        for event in events:
            if event.id is None:
                continue
            self.add_row(*eval_cells(event), key=str(event.id))
            bisect.insort(self._by_step, (event.step, event.id))
            added = True
        if not added:
            return
        self.remove_class("-empty")
        if not self.in_arrival_order:
            self._sort()
        elif was_at_newest:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def reset(self) -> None:
        self.clear()
        self._by_step.clear()
        self.add_class("-empty")  # early in a run: app.tcss gives its room to the example pane

    def previous_of(self, event_id: int) -> int | None:
        """The id of the full eval just before `event_id` in step order, or None for the first."""
        ids = [eid for _, eid in self._by_step]
        index = ids.index(event_id)
        return ids[index - 1] if index > 0 else None

    def action_sort_next(self) -> None:
        keys = [column.key for column in EVAL_COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self._sort()

    def action_flip_order(self) -> None:
        self.descending = not self.descending
        self._sort()

    def on_data_table_header_selected(self, message: DataTable.HeaderSelected) -> None:
        column = str(message.column_key.value)
        if column == self.sort_column:
            self.descending = not self.descending
        self.sort_column = column
        self._sort()

    def _sort(self) -> None:
        self.sort(self.sort_column, key=Cell.sort_key, reverse=self.descending)
        self._show_sort()

    def _show_sort(self) -> None:
        label = next(column.header for column in EVAL_COLUMNS if column.key == self.sort_column)
        order = "↓ high first" if self.descending else "↑ low first"
        if self.in_arrival_order:
            order = "↑ newest last"
        self.border_title = f"full evals · sorted by {label} {order} · Enter opens"
