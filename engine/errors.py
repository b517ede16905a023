"""Errors the engine raises where it finds the problem; the CLI prints them as one line."""

from __future__ import annotations

from ..store.errors import TwoTierError


class ConfigError(TwoTierError):
    """A config key, flag or value is wrong; nothing has been written to the ledger."""

    exit_code = 2


class DataError(TwoTierError):
    """A dataset or model cannot be used as configured; nothing has been written to the ledger."""

    exit_code = 2
