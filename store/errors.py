"""The one error tree of twotier: raised where a problem is found, printed once at the command line."""

from __future__ import annotations


class TwoTierError(Exception):
    """A problem the user can act on; its message is one line that names the file, key or row."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class LedgerError(TwoTierError):
    """The ledger file cannot be opened, read or written as asked."""


class LedgerNotReady(LedgerError):
    """The ledger is being created (an empty file, no tables yet): a viewer waits instead of failing."""


class RunNotFound(LedgerError):
    """No run matches the reference (yet: a viewer of a starting run waits for it)."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name when it has none."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
