"""Repeated measurements reduced to median, min and max, and the one table every module's rows go into.

The machines are noisy, so a figure is never one run: it is the median of several, shown with its spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """Repeated values of one figure."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Sample:
        kept = tuple(float(value) for value in values)
        if not kept:
            raise ValueError("a sample needs at least one value")
        return cls(kept)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def scaled(self, factor: float) -> Sample:
        return Sample(tuple(value * factor for value in self.values))

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile (q in 0..1) of the values."""
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Sample:
    """Per-repetition ratios: each pair was measured side by side, so the noise of one moment cancels."""
    return Sample.of(a / b for a, b in zip(numerators, denominators, strict=True))


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, its unit, the goal it is held to and whether it met it."""

    section: str
    name: str
    sample: Sample | None
    unit: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""


def judged(row: Row, ok: Callable[[float], bool]) -> Row:
    """The row with `met` set from its median."""
    if row.sample is None:
        return row
    return Row(row.section, row.name, row.sample, row.unit, row.goal, ok(row.sample.median), row.note)


def fmt(value: float) -> str:
    """Three significant figures, without scientific notation for the usual ranges."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2g}"


@dataclass
class Table:
    """Rows in the order they were measured, printed once at the end."""

    rows: list[Row] = field(default_factory=list)

    HEADER = ("#", "measurement", "median", "min", "max", "n", "unit", "goal", "met")

    def add(self, rows: Iterable[Row]) -> None:
        self.rows.extend(rows)

    def lines(self) -> list[str]:
        cells = [self.HEADER] + [_cells(row) for row in self.rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(self.HEADER))]
        numeric = {2, 3, 4, 5}
        out = []
        for index, line in enumerate(cells):
            padded = [
                cell.rjust(width) if i in numeric else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(line, widths))
            ]
            out.append("  ".join(padded).rstrip())
            if index == 0:
                out.append("  ".join("-" * width for width in widths))
        notes = [f"[{row.section}] {row.name}: {row.note}" for row in self.rows if row.note]
        if notes:
            out.append("")
            out.extend(notes)
        return out


def _cells(row: Row) -> tuple[str, ...]:
    met = "" if row.met is None else ("yes" if row.met else "NO")
    if row.sample is None:
        return (row.section, row.name, "-", "-", "-", "0", row.unit, row.goal, met or "skipped")
    sample = row.sample
    return (
        row.section,
        row.name,
        fmt(sample.median),
        fmt(sample.low),
        fmt(sample.high),
        str(len(sample.values)),
        row.unit,
        row.goal,
        met,
    )
