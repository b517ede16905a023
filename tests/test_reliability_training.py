"""Training faults on real tiny runs: a NaN loss, a full eval that runs out of memory, a ledger that cannot be written."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from transformers import TrainerCallback

from support import train_tiny
from twotier.store import Kind, LedgerReader, RunStatus


class NanFromStep(TrainerCallback):
    """Turns the real model's input embeddings into NaN from `step` on (multiplied by NaN, on any CPU), as a bad batch would."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.hook: Any = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step and model is not None:
            embeddings = model.get_input_embeddings()
            self.hook = embeddings.register_forward_hook(lambda module, inputs, output: output * math.nan)


class EvalOutOfMemory(TrainerCallback):
    """Makes every forward pass in eval mode fail as a GPU that runs out of memory does."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def fail(module, inputs):
            if not module.training:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")

        model.register_forward_pre_hook(fail)


def test_a_nan_loss_is_recorded_and_stops_the_run_as_failed_naming_the_step_and_example(tmp_path):
    ended = train_tiny(tmp_path, {"callbacks": [NanFromStep(3)]})
    assert ended.status is RunStatus.FAILED
    nan_event = next(e for e in ended.events if not e.loss_is_finite)
    assert nan_event.step == 3
    assert "nan at step 3 on example 'reverse " in ended.error
    with LedgerReader(tmp_path / "ledger.db") as reader:
        run = reader.run(ended.run_id)
        stored = {e.step: e for e in reader.iter_events(ended.run_id)}
    assert run.status is RunStatus.FAILED and run.error == ended.error
    assert math.isnan(stored[3].loss) and stored[2].loss_is_finite
    assert max(stored) < 8  # it stopped early


def test_with_stop_on_nan_off_training_goes_on_and_records_nan(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="twotier.engine"):
        ended = train_tiny(tmp_path, {"callbacks": [NanFromStep(3)]}, stop_on_nan=False)
    assert ended.status is RunStatus.FINISHED
    with LedgerReader(tmp_path / "ledger.db") as reader:
        stored = list(reader.iter_events(ended.run_id))
    assert [e.step for e in stored] == list(range(1, 9))
    assert all(math.isnan(e.loss) for e in stored[2:])
    assert sum("training goes on (stop_on_nan is off)" in r.getMessage() for r in caplog.records) == 1


def test_a_full_eval_that_runs_out_of_memory_is_recorded_without_results_and_training_goes_on(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="twotier.engine"):
        ended = train_tiny(tmp_path, {"callbacks": [EvalOutOfMemory()]}, eval_steps=4)
    assert ended.status is RunStatus.FINISHED, ended.error
    with LedgerReader(tmp_path / "ledger.db") as reader:
        fulls = [e for e in reader.iter_events(ended.run_id) if e.kind is Kind.FULL]
    assert [e.step for e in fulls] == [4, 8]
    assert all(e.model_output is None and e.val_loss is None and e.loss_is_finite for e in fulls)
    assert all(e.eval_error.startswith("OutOfMemoryError: CUDA out of memory") for e in fulls)
    warnings = [r.getMessage() for r in caplog.records if "full eval at step" in r.getMessage()]
    assert len(warnings) == 2 and "OutOfMemoryError: CUDA out of memory" in warnings[0]
