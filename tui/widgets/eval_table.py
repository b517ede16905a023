"""The full-eval history: one row per full eval, sortable by any column, a row opens that eval."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ...store import StepEvent
from ..blocks import fmt_gap, fmt_loss, gap_mark

# (key, header); the header of the sorted column gets an arrow.
COLUMNS = (
    ("step", "step"), ("train", "train loss"), ("val", "val loss"), ("gap", "gap"),
    ("match", "MATCH"), ("heldout", "held-out"), ("seconds", "eval s"),
)  # fmt: skip


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
    match = "-" if event.match is None else ("✅" if event.match else "❌")
    heldout = "-" if event.probe_accuracy is None else f"{event.probe_accuracy:.2f}"
    seconds = "-" if event.eval_seconds is None else f"{event.eval_seconds:.2f}"
    return [
        Cell(str(event.step), event.step),
        Cell(fmt_loss(event.train_loss_mean), event.train_loss_mean),
        Cell(fmt_loss(event.val_loss), event.val_loss),
        Cell(f"{fmt_gap(event.gap)} {gap_mark(event.gap_ok)}".rstrip(), event.gap),
        Cell(match, event.match),
        Cell(heldout, event.probe_accuracy),
        Cell(seconds, event.eval_seconds),
    ]


class EvalTable(DataTable):
    """In step order, newest last, by default; `s` sorts by the next column, `o` flips the order.

    In the default order a new eval is appended, so the cost of an update does not grow with the
    run; in any other order the rows are sorted again when an eval arrives.
    """

    DEFAULT_CSS = """
    EvalTable {
        border-top: solid $accent;
        border-title-align: left;
    }
    """

    BINDINGS = [
        Binding("s", "sort_next", "Sort col"),
        Binding("o", "flip_order", "Order"),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.sort_column = "step"
        self.descending = False
        # Event ids in step order, to find the eval before a given one.
        self._by_step: list[tuple[int, int]] = []

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        self._show_sort()

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
        if not self.in_arrival_order:
            self._sort()
        elif was_at_newest:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def reset(self) -> None:
        self.clear()
        self._by_step.clear()

    def previous_of(self, event_id: int) -> int | None:
        """The id of the full eval just before `event_id` in step order, or None for the first."""
        ids = [eid for _, eid in self._by_step]
        index = ids.index(event_id)
        return ids[index - 1] if index > 0 else None

    def action_sort_next(self) -> None:
        keys = [key for key, _ in COLUMNS]
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
        label = dict(COLUMNS)[self.sort_column]
        order = "↓ high first" if self.descending else "↑ low first"
        if self.in_arrival_order:
            order = "↑ newest last"
        self.border_title = f"full evals · sorted by {label} {order} · Enter opens"
