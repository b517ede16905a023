"""Training with two tiers of logging: transformers' Trainer plus a callback, run in a background thread.

Knows nothing of the interface; writes every event to the ledger through `twotier.store`.
"""
