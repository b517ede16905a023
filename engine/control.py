"""Pause, stop and the final checkpoint, as a Trainer callback: where a run is steered, at a step end.

Whatever asks (a request in the ledger from `twotier pause`, the app or the daemon; a signal; the
owning thread), the run acts at `on_step_end`, the one place where every rank has finished the same
step and a checkpoint is consistent. In a multi-process run the ranks first agree (one small
all-reduce), so they pause, stop or give up at the same step; while paused they meet every half
second, so no rank waits in a collective anywhere near the process-group timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..store import LedgerWriter, RunStatus
from .distributed import agree, hold_while_paused
from .steering import Steering

PAUSE_POLL_S = 0.2


class ControlCallback(TrainerCallback):
    """Holds the loop while the run is paused, ends it on a stop or a failure, and saves at the end.

    `steering` is what the run was asked; `writer` is the run's ledger writer on the process that writes
    (rank 0), None on the others; `failure` says why training must end as failed (None while it may go on);
    `save_at_end`: save a checkpoint at the last step too (the command line's runs; a user's script saves
    as its own arguments say).
    """

    def __init__(
        self,
        steering: Steering,
        writer: LedgerWriter | None,
        failure: Callable[[], str | None] = lambda: None,
        *,
        save_at_end: bool = True,
    ) -> None:
        self.steering = steering
        self.writer = writer
        self.failure = failure
        self.save_at_end = save_at_end

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        run = self.steering
        decided = agree(stop=run.stop_requested, pause=run.paused, failure=self.failure() is not None)
        if decided.failure:
            control.should_training_stop = True  # no checkpoint: the weights are what failed
            return
        if decided.pause and not decided.stop:
            self._set_status(RunStatus.PAUSED, run.carried_out("pause"), state.global_step)
            decided = hold_while_paused(lambda: run.paused, lambda: run.stop_requested, poll_s=PAUSE_POLL_S)
            if not decided.stop:
                self._set_status(RunStatus.RUNNING, run.carried_out("unpause"), state.global_step)
        if decided.stop:
            if not run.stop_requested:  # another rank's signal: this rank ends the run as if it had got it
                run.stop()
            control.should_training_stop = True
            control.should_save = True
        elif self.save_at_end and state.global_step >= state.max_steps:
            control.should_save = True

    def _set_status(self, status: RunStatus, done: tuple[int, ...], step: int) -> None:
        if self.writer is not None:
            self.writer.set_status(status, done, step=step)
