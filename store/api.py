"""The notebook entry point: `open_ledger_readonly(path)` returns runs, events, full evals and probes as records.

    >>> from twotier.store.api import open_ledger_readonly
    >>> with open_ledger_readonly("runs/ledger.db") as ledger:
    ...     evals = ledger.full_evals("latest").to_pandas()

Records are plain dicts in plain lists. `to_pandas()` needs pandas; `to_dataset()` imports
`datasets` only when called (that library may load torch lazily later; this module never does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import TwoTierError
from .export import EVENT_COLUMNS, PROBE_COLUMNS, event_record, event_records, probe_records
from .query import RUN_COLUMNS, run_summaries
from .reader import LedgerReader


class Records(list[dict[str, Any]]):
    """A list of dicts that all have `columns` as keys, convertible to a DataFrame or a Dataset."""

    def __init__(self, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
        super().__init__(rows)
        self.columns = columns

    def to_pandas(self) -> Any:
        """A pandas DataFrame with one column per key, in `columns` order (also when empty)."""
        try:
            import pandas
        except ImportError:
            raise TwoTierError("to_pandas() needs pandas: pip install pandas") from None
        return pandas.DataFrame.from_records(list(self), columns=list(self.columns))

    def to_dataset(self) -> Any:
        """A `datasets.Dataset`; nested values (a run's config) become JSON text, as Arrow needs one type per column."""
        import datasets

        return datasets.Dataset.from_dict({column: [_flat(row[column]) for row in self] for column in self.columns})


class LedgerRecords:
    """A ledger opened read-only; each method takes a run (id, prefix, name or `latest`) or None for all runs."""

    def __init__(self, path: str | Path) -> None:
        self.reader = LedgerReader(path)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> LedgerRecords:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def runs(self, status: str | None = None) -> Records:
        """One record per run, newest first, with its final figures and its config (a dict)."""
        return Records([summary.record() for summary in run_summaries(self.reader, status)], RUN_COLUMNS)

    def events(self, run: str | None = None) -> Records:
        """Every fast log and full eval, in the order they were written."""
        return Records(list(event_records(self.reader, self._run_id(run))), EVENT_COLUMNS)

    def full_evals(self, run: str | None = None) -> Records:
        evals = self.reader.full_evals(self._run_id(run))
        return Records([event_record(event) for event in evals], EVENT_COLUMNS)

    def probes(self, run: str | None = None) -> Records:
        """One record per probe example per full eval."""
        return Records(list(probe_records(self.reader, self._run_id(run))), PROBE_COLUMNS)

    def _run_id(self, ref: str | None) -> str | None:
        return None if ref is None else self.reader.run(ref).id


def open_ledger_readonly(path: str | Path) -> LedgerRecords:
    """Open the ledger at `path` for reading only (it cannot be changed through this object)."""
    return LedgerRecords(path)


def _flat(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else value
