"""When each tier fires: a fast log every `log_steps`, a full eval every `eval_steps` and at the last step."""

from __future__ import annotations

from dataclasses import dataclass

from ..store.records import Kind
from .errors import ConfigError


@dataclass(frozen=True)
class TierSettings:
    """Cadence of the two tiers; 0 turns a tier off. Checked here so a bad value fails before training."""

    log_steps: int = 10
    eval_steps: int = 200
    gap_threshold: float = 0.25

    def __post_init__(self) -> None:
        for name in ("log_steps", "eval_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"'{name}' must be a whole number, 0 or more (0 turns the tier off), got {value!r}")

    def tier_at(self, step: int, max_steps: int) -> Kind | None:
        """Full eval on multiples of eval_steps and on the last step (unless evals are off); else fast log."""
        if self.eval_steps and (step % self.eval_steps == 0 or step == max_steps):
            return Kind.FULL
        if self.log_steps and step % self.log_steps == 0:
            return Kind.FAST
        return None
