"""The one error tree of twotier: raised where a problem is found, printed once at the command line."""

from __future__ import annotations


class TwoTierError(Exception):
    """A problem the user can act on; its message is one line that names the file, key or row."""

    exit_code = 1


class LedgerError(TwoTierError):
    """The ledger file cannot be opened, read or written as asked."""
