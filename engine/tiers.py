"""The two tiers as a `TrainerCallback`: at each due step it reads the step's losses and example, runs
the full eval when due, and publishes one `StepEvent`.

The callback reads training state; it does not own the loop. Inside `TwoTierTrainer` the loss tap is
fed for free by `compute_loss`; dropped into any other `Trainer`, a `ForwardHook` feeds it.

Why an event is decided at `on_step_end` but published later: the learning rate and the grad norm of
a step reach callbacks only through the Trainer's `on_log`, which comes after `on_step_end` (when the
callback asked for a log). So the step's reading and its full eval are taken at `on_step_end`, kept
as `_Due`, and joined with the logged figures at `on_log`; should no log come (a subclass that drops
it), the next step's `on_step_begin` or `on_train_end` publishes what is due without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..store.records import Kind, StepEvent
from . import distributed
from .cadence import TierSettings
from .capture import ForwardHook
from .chat import RowReader, Shown
from .errors import ConfigError
from .evaluate import EvalFailure, EvalResult, Evaluator
from .loss import LossTap, Reading

log = logging.getLogger("twotier.engine")
# What the Trainer logs that an event holds in fields of its own; every other logged key goes to `metrics`.
OWN_FIELDS = ("learning_rate", "grad_norm", "epoch")
COVERS_PROMPT = (
    "the training loss covers the prompt too (nothing before the answer is masked), so the example's loss and "
    "the train loss include the prompt; the validation loss is scored over the same tokens, so the gap compares "
    "like with like. To train on answers only, set assistant_only_loss=True (messages) or "
    "completion_only_loss=True (prompt/completion) in TRL's SFTConfig, or give the engine prompt/answer rows"
)


@dataclass
class _Due:
    """A step whose event waits for the Trainer's logged figures (see the module docstring)."""

    kind: Kind
    step: int
    example: Shown
    reading: Reading
    tokens_per_s: float | None
    evaluation: EvalResult | EvalFailure | None
    rank: int | None  # the example's, in a multi-process run


class TwoTierCallback(TrainerCallback):
    """Emits a `StepEvent` per due step to `publish` (the ledger writer, a queue, or both)."""

    def __init__(
        self,
        *,
        run_id: str,
        tokenizer: Any,
        publish: Callable[[StepEvent], None],
        evaluator: Evaluator | None,
        settings: TierSettings | None = None,
        loss_tap: LossTap | None = None,
        reader: RowReader | None = None,
    ) -> None:
        """`reader` splits a training row into prompt and golden content (the chat template's markers left
        out); `loss_tap` is fed by a `TwoTierTrainer`, else a forward hook on the model feeds one."""
        if (settings or TierSettings()).eval_steps and evaluator is None:
            raise ConfigError("full evals need validation examples: pass an Evaluator, or set eval_steps to 0")
        self.run_id = run_id
        self.tokenizer = tokenizer
        self.publish = publish
        self.evaluator = evaluator
        self.settings = settings or TierSettings()
        self.tap = loss_tap or LossTap()
        self.reader = reader or RowReader(tokenizer, None)
        self._needs_hook = loss_tap is None
        self._checked_mask = False
        self._told_unavailable = False
        self._hook: ForwardHook | None = None
        self._due: _Due | None = None
        self._started = time.time()
        self._last_read = time.perf_counter()

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        self._started = time.time()
        self._last_read = time.perf_counter()
        if self._needs_hook and model is not None and self._hook is None:
            self._hook = ForwardHook(model, self.tap)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._publish_due(logs={})
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._publish_due(logs={})
        self.tap.begin_step()

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        kind = self.settings.tier_at(state.global_step, state.max_steps)
        if kind is None:
            return
        control.should_log = True  # on every rank: the Trainer's logging gathers the loss across ranks
        if self.tap.last is None:
            return
        # On every rank, in the same order: the read sums the losses over the ranks and the full eval is sharded
        # over them (both collectives); only the main process's publish writes (the others' publish nothing).
        reading = self.tap.read(since_eval=kind is Kind.FULL)  # the host sync of this log step
        self._check_reading(reading, loud=state.is_world_process_zero)
        example = self.reader.show(reading.input_ids, reading.labels)
        now = time.perf_counter()
        tokens_per_s = reading.input_tokens / (now - self._last_read) if now > self._last_read else None
        evaluation = None
        if kind is Kind.FULL and self.evaluator is not None and model is not None:
            evaluation = self.evaluator.run_guarded(model, example.prompt_ids, state.global_step)
        self._last_read = time.perf_counter()
        rank = distributed.rank() if distributed.is_distributed() else None
        self._due = _Due(kind, state.global_step, example, reading, tokens_per_s, evaluation, rank)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs:
            self._publish_due(logs, epoch=state.epoch)

    def _check_reading(self, reading: Reading, *, loud: bool = True) -> None:
        """Say once what the step's output cannot give, and what the training loss covers (the gap follows it).
        `loud`: this process says it (one of several ranks says nothing, but scores the same way)."""
        if self.tap.unavailable is not None and not self._told_unavailable:
            self._told_unavailable = True
            if loud:
                log.warning("%s; the fast log shows the example and the trainer's loss only", self.tap.unavailable)
        if not self._checked_mask and reading.labels:
            self._checked_mask = True
            if self.reader.covers_prompt(reading.labels):
                if loud:
                    log.warning(COVERS_PROMPT)
                if self.evaluator is not None:
                    self.evaluator.covers_prompt = True

    def _publish_due(self, logs: dict[str, float], epoch: float | None = None) -> None:
        due, self._due = self._due, None
        if due is None:
            return
        golden = due.example.golden
        batch_loss = due.reading.batch_loss if due.reading.batch_loss is not None else logs.get("loss")
        event = StepEvent(
            run_id=self.run_id,
            step=due.step,
            kind=due.kind,
            wall_time=time.time(),
            elapsed_s=time.time() - self._started,
            prompt=due.example.prompt,
            golden=golden,
            loss=due.reading.loss,
            prompt_tokens=due.example.prompt_tokens,
            golden_tokens=due.example.golden_tokens,
            batch_loss=batch_loss,
            learning_rate=logs.get("learning_rate"),
            grad_norm=logs.get("grad_norm"),
            tokens_per_s=due.tokens_per_s,
            epoch=epoch,
            example_rank=due.rank,
            metrics=logged_metrics(logs),
        )
        if isinstance(due.evaluation, EvalFailure):
            event = replace(event, eval_error=due.evaluation.error)
        elif due.evaluation is not None:
            event = self._with_eval(event, due.evaluation, due.reading.train_loss_mean, golden)
        self.publish(event)

    def _with_eval(self, event: StepEvent, result: EvalResult, train_mean: float | None, golden: str) -> StepEvent:
        gap = result.val_loss - train_mean if train_mean is not None else None
        assert self.evaluator is not None  # an eval result comes from it
        rule = self.evaluator.rule
        match, score = rule.judge(result.example_answer.text, golden)
        return replace(
            event,
            model_output=result.example_answer.text,
            output_tokens=result.example_answer.tokens,
            match=match,
            match_rule=rule.spec,
            score=score,
            train_loss_mean=train_mean,
            val_loss=result.val_loss,
            gap=gap,
            gap_ok=None if gap is None else gap <= self.settings.gap_threshold,
            probe_accuracy=result.probe_accuracy,
            probe_score=result.probe_score,
            probe_token_accuracy=result.probe_token_accuracy,
            eval_seconds=result.seconds,
            probes=result.probes,
        )


def logged_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """Every number the Trainer logged at the step (TRL's entropy, mean_token_accuracy, num_tokens, the
    library's own loss...) that the event has no field of its own for."""
    return {
        key: float(value)
        for key, value in logs.items()
        if key not in OWN_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
