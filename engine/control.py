"""Pause, stop and the final checkpoint, as a Trainer callback: how a `TrainingRun`'s owner reaches the loop.

Requests are acted on at a step boundary (`on_step_end`), the one place where every rank has finished
the same step and a checkpoint is consistent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..store import LedgerWriter, RunStatus

if TYPE_CHECKING:
    from .runner import TrainingRun


class ControlCallback(TrainerCallback):
    """Holds the loop while the run is paused, ends it on a stop or a failure, and saves at the end."""

    def __init__(self, run: TrainingRun, writer: LedgerWriter) -> None:
        self.run = run
        self.writer = writer

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.run.failure is not None:
            control.should_training_stop = True  # no checkpoint: the weights are what failed
            return
        if self.run.paused and not self.run.stop_requested:
            self.writer.set_status(RunStatus.PAUSED)
            self.run.wait_while_paused()
            if not self.run.stop_requested:
                self.writer.set_status(RunStatus.RUNNING)
        if self.run.stop_requested:
            control.should_training_stop = True
            control.should_save = True
        elif state.global_step >= state.max_steps:
            control.should_save = True
