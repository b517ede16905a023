"""The Textual app of `twotier-tui`: it tails a run's ledger and shows it, and owns the run when it trains here."""

from .app import TwoTierApp, make_app, run_app

__all__ = ["TwoTierApp", "make_app", "run_app"]
