"""The loss sparklines: training loss of every event and validation loss of every full eval, bounded."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from ....store import StepEvent
from ....store.reader import LossHistory
from ...render import fmt_loss, gap_mark

CAPACITY = 256


class Downsampled:
    """A series that keeps at most 2 × `capacity` points however many are added.

    When it fills up, neighbours are averaged in pairs and each later point covers twice as many
    values, so the whole run stays in view at a resolution that halves as the run doubles.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.points: list[float] = []
        self.per_point = 1
        self._sum = 0.0
        self._count = 0

    def add(self, value: float) -> None:
        self._sum += value
        self._count += 1
        if self._count < self.per_point:
            return
        self.points.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0
        if len(self.points) >= 2 * self.capacity:
            pairs = zip(self.points[0::2], self.points[1::2])
            self.points = [(a + b) / 2 for a, b in pairs]
            self.per_point *= 2

    def seed(self, points: list[float], per_point: int) -> None:
        """Start from points that each already average `per_point` values (a long run's history)."""
        self.points = list(points)
        self.per_point = max(1, per_point)
        self._sum, self._count = 0.0, 0

    def values(self) -> list[float]:
        """The points, plus the partial one being filled, so the newest value always shows."""
        return self.points + ([self._sum / self._count] if self._count else [])


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class LossChart(Vertical):
    """Two labelled sparklines with the latest values as numbers."""

    DEFAULT_CSS = """
    LossChart {
        height: auto;
        border-top: solid $accent;
        border-title-align: left;
    }
    LossChart Horizontal {
        height: 1;
    }
    LossChart .label {
        width: 16;
    }
    LossChart Sparkline {
        width: 1fr;
    }
    LossChart #val-spark > .sparkline--max-color {
        color: $warning;
    }
    """

    def __init__(self, capacity: int = CAPACITY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.train = Downsampled(capacity)
        self.val = Downsampled(capacity)
        self.latest_train: StepEvent | None = None
        self.latest_full: StepEvent | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(id="train-label", classes="label")
            yield Sparkline([], id="train-spark", summary_function=_mean)
        with Horizontal():
            yield Static(id="val-label", classes="label")
            yield Sparkline([], id="val-spark", summary_function=_mean)

    def on_mount(self) -> None:
        self.border_title = "loss · train, val"
        self._show()

    def add(self, events: Iterable[StepEvent]) -> None:
        for event in events:
            self.latest_train = event
            if event.batch_loss is not None and math.isfinite(event.batch_loss):
                self.train.add(event.batch_loss)
            if event.is_full:
                self.latest_full = event
                if event.val_loss is not None and math.isfinite(event.val_loss):
                    self.val.add(event.val_loss)
        self._show()

    def seed(self, history: LossHistory) -> None:
        """Start from a long run's history, averaged by the ledger, before its recent events arrive."""
        self.train.seed(history.train.points, history.train.per_point)
        self.val.seed(history.val.points, history.val.per_point)
        self._show()

    def reset(self) -> None:
        self.train = Downsampled(self.train.capacity)
        self.val = Downsampled(self.val.capacity)
        self.latest_train = self.latest_full = None
        self._show()

    def _show(self) -> None:
        train, full = self.latest_train, self.latest_full
        train_label = Text("train ", style="bold")
        train_label.append(fmt_loss(train.batch_loss if train else None))
        val_label = Text("val   ", style="bold")
        val_label.append(fmt_loss(full.val_loss if full else None))
        if full is not None:
            val_label.append(f" {gap_mark(full.gap_ok)}")
        # The labels have a fixed size: a new value needs no new layout.
        self.query_one("#train-label", Static).update(train_label, layout=False)
        self.query_one("#val-label", Static).update(val_label, layout=False)
        self.query_one("#train-spark", Sparkline).data = self.train.values()
        self.query_one("#val-spark", Sparkline).data = self.val.values()
