"""Training with two tiers of logging: transformers' Trainer plus a callback, run in a background thread.

Knows nothing of the interface; writes every event to the ledger through `twotier.store`. `TwoTier`, the one
call for a user's own Trainer or SFTTrainer script, is imported on first use, so that importing the package
(the config, for the command line) loads no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TwoTier"]


def __getattr__(name: str) -> Any:
    if name == "TwoTier":
        from .join import TwoTier

        return TwoTier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
