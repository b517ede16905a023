"""The run ledger: one SQLite file (WAL) holding runs, fast logs, full evals and probe answers.

Knows nothing of torch or of the interface; the engine writes through `LedgerWriter`, viewers
and query commands read through `LedgerReader`.
"""

from .db import DEFAULT_LEDGER, Ledger, open_ledger
from .errors import LedgerError, TwoTierError
from .reader import LedgerReader
from .records import Kind, ProbeResult, RunInfo, RunStatus, StepEvent
from .writer import LedgerWriter, create_run, reopen_run

__all__ = [
    "DEFAULT_LEDGER",
    "Kind",
    "Ledger",
    "LedgerError",
    "LedgerReader",
    "LedgerWriter",
    "ProbeResult",
    "RunInfo",
    "RunStatus",
    "StepEvent",
    "TwoTierError",
    "create_run",
    "open_ledger",
    "reopen_run",
]
