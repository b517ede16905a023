"""The two tiers as a `TrainerCallback`: a fast log every `log_steps`, a full eval every `eval_steps`.

The callback reads training state; it does not own the loop. It works inside twotier's own
`TwoTierTrainer` (which hands it the step's unreduced losses for free) and dropped into any
`Trainer` (where a forward hook computes them beside the library's loss, about 2% of a step).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..store.records import Kind, StepEvent
from .data import IGNORE_INDEX
from .errors import ConfigError
from .evaluate import EvalResult, Evaluator, answers_match
from .loss import LossTap, Reading, token_losses

log = logging.getLogger("twotier.engine")


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


@dataclass(frozen=True)
class _Example:
    prompt_ids: list[int]
    golden_ids: list[int]


@dataclass(frozen=True)
class EvalFailure:
    """A full eval that raised: the event keeps why, and training goes on."""

    error: str


@dataclass
class _Due:
    kind: Kind
    step: int
    example: _Example
    reading: Reading
    tokens_per_s: float | None
    evaluation: EvalResult | EvalFailure | None


class TwoTierCallback(TrainerCallback):
    """Emits a `StepEvent` per due step to `publish` (the ledger writer, a queue, or both)."""

    def __init__(
        self,
        *,
        run_id: str,
        tokenizer: Any,
        publish: Callable[[StepEvent], None],
        evaluator: Evaluator | None,
        settings: TierSettings = TierSettings(),
        loss_tap: LossTap | None = None,
    ) -> None:
        if settings.eval_steps and evaluator is None:
            raise ConfigError("full evals need validation examples: pass an Evaluator, or set eval_steps to 0")
        self.run_id = run_id
        self.tokenizer = tokenizer
        self.publish = publish
        self.evaluator = evaluator
        self.settings = settings
        self.tap = loss_tap or LossTap()
        self._hooked = loss_tap is None
        self._hook: Any = None
        self._due: _Due | None = None
        self._started = time.time()
        self._last_read = time.perf_counter()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: torch.nn.Module | None = None, **kwargs: Any) -> None:  # fmt: skip
        self._started = time.time()
        self._last_read = time.perf_counter()
        if self._hooked and model is not None and self._hook is None:
            self._hook = model.register_forward_hook(self._capture, with_kwargs=True)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._emit(logs={})
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._emit(logs={})
        self.tap.begin_step()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: torch.nn.Module | None = None, **kwargs: Any) -> None:  # fmt: skip
        kind = self.settings.tier_at(state.global_step, state.max_steps)
        if kind is None:
            return
        control.should_log = True  # on every rank: the Trainer's logging gathers the loss across ranks
        if self.tap.last is None or not state.is_world_process_zero:
            return
        reading = self.tap.read(since_eval=kind is Kind.FULL)  # the host sync of this log step
        example = self._example(reading)
        now = time.perf_counter()
        tokens_per_s = reading.input_tokens / (now - self._last_read) if now > self._last_read else None
        evaluation = None
        if kind is Kind.FULL and self.evaluator is not None and model is not None:
            evaluation = self._evaluate(model, example.prompt_ids, state.global_step)
        self._last_read = time.perf_counter()
        self._due = _Due(kind, state.global_step, example, reading, tokens_per_s, evaluation)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:  # fmt: skip
        if logs and "loss" in logs:
            self._emit(logs, epoch=state.epoch)

    def _emit(self, logs: dict[str, float], epoch: float | None = None) -> None:
        due, self._due = self._due, None
        if due is None:
            return
        decode = self._decode
        golden = decode(due.example.golden_ids)
        event = StepEvent(
            run_id=self.run_id, step=due.step, kind=due.kind, wall_time=time.time(),
            elapsed_s=time.time() - self._started, prompt=decode(due.example.prompt_ids), golden=golden,
            loss=due.reading.example_loss, prompt_tokens=len(due.example.prompt_ids),
            golden_tokens=len(due.example.golden_ids), batch_loss=due.reading.step_loss,
            learning_rate=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
            tokens_per_s=due.tokens_per_s, epoch=epoch,
        )  # fmt: skip
        if isinstance(due.evaluation, EvalFailure):
            event = replace(event, eval_error=due.evaluation.error)
        elif due.evaluation is not None:
            event = self._with_eval(event, due.evaluation, due.reading.train_loss_mean, golden)
        self.publish(event)

    def _with_eval(self, event: StepEvent, result: EvalResult, train_mean: float | None, golden: str) -> StepEvent:
        gap = result.val_loss - train_mean if train_mean is not None else None
        return replace(
            event, model_output=result.example_answer.text, output_tokens=result.example_answer.tokens,
            match=answers_match(result.example_answer.text, golden), train_loss_mean=train_mean,
            val_loss=result.val_loss, gap=gap, gap_ok=None if gap is None else gap <= self.settings.gap_threshold,
            probe_accuracy=result.probe_accuracy, probe_token_accuracy=result.probe_token_accuracy,
            eval_seconds=result.seconds, probes=result.probes,
        )  # fmt: skip

    def _evaluate(self, model: torch.nn.Module, prompt_ids: list[int], step: int) -> EvalResult | EvalFailure | None:
        """The full eval, or why it failed: an eval that runs out of memory must not end the training."""
        try:
            return self.evaluator.run(model, prompt_ids) if self.evaluator is not None else None
        except Exception as err:  # noqa: BLE001 - any failure of the eval alone; training errors pass elsewhere
            failure = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        # Out of the except block, the traceback and the tensors its frames held are gone.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning("the full eval at step %d failed (%s); it is recorded without its results and training goes on",
                    step, failure)  # fmt: skip
        return EvalFailure(failure)

    def _example(self, reading: Reading) -> _Example:
        """The first example of the step's last micro-batch, split into prompt and golden tokens."""
        ids, labels = reading.input_ids, reading.labels
        first_label = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
        pad = self.tokenizer.pad_token_id
        prompt = [token for token in ids[:first_label] if token != pad]
        golden = [label for label in labels if label != IGNORE_INDEX]
        return _Example(prompt, golden)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _capture(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        """Forward hook for a plain `Trainer`: per-example losses from the logits the step already has."""
        labels = kwargs.get("labels")
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if not module.training or labels is None or input_ids is None:
            return
        losses, mask = token_losses(output.logits.detach(), labels)
        self.tap.record(input_ids, labels, losses, mask, kwargs.get("attention_mask"))
