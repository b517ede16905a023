"""A fast log costs no extra forward pass, no generate call and no validation pass: counted, not assumed."""

from __future__ import annotations

from collections import Counter
from functools import partial

from transformers import Trainer, TrainerCallback, TrainingArguments

from twotier.engine.cadence import TierSettings
from twotier.engine.data import collate
from twotier.engine.evaluate import Evaluator
from twotier.engine.loss import LossTap
from twotier.engine.tiers import TwoTierCallback
from twotier.engine.trainer import TwoTierTrainer
from twotier.store import Kind


class ForwardCounter(TrainerCallback):
    """Counts the model's forward calls per optimizer step, split into training and eval-mode calls."""

    def __init__(self, model):
        self.step = 0
        self.calls: Counter[tuple[int, bool]] = Counter()
        model.register_forward_pre_hook(lambda module, args: self.calls.update([(self.step, module.training)]))

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step + 1


def train(tiny, examples, tmp_path, *, ours: bool, max_steps=10, log_steps=1, eval_steps=10):
    events = []
    evaluator = Evaluator(
        tiny.tokenizer, examples.validation, eval_samples=8, probe_size=4, max_new_tokens=4, batch_size=8
    )
    tap = LossTap() if ours else None
    tiers = TwoTierCallback(
        run_id="test",
        tokenizer=tiny.tokenizer,
        publish=events.append,
        evaluator=evaluator,
        settings=TierSettings(log_steps=log_steps, eval_steps=eval_steps),
        loss_tap=tap,
    )
    counter = ForwardCounter(tiny.model)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
    )
    data = examples.train.select(range(200))
    common = {
        "model": tiny.model,
        "args": args,
        "train_dataset": data,
        "callbacks": [tiers, counter],
        "data_collator": partial(collate, pad_id=tiny.tokenizer.pad_token_id),
    }
    trainer = TwoTierTrainer(**common, loss_tap=tap) if ours else Trainer(**common)
    trainer.train()
    return events, counter.calls


def test_fast_log_steps_run_exactly_one_forward_and_nothing_in_eval_mode(tiny, demo_examples, tmp_path):
    events, calls = train(tiny, demo_examples, tmp_path, ours=True)
    fast_steps = [e.step for e in events if e.kind is Kind.FAST]
    assert fast_steps == list(range(1, 10))
    for step in fast_steps:
        assert calls[(step, True)] == 1
        assert calls[(step, False)] == 0


def test_the_full_eval_step_is_where_generation_and_validation_run(tiny, demo_examples, tmp_path):
    events, calls = train(tiny, demo_examples, tmp_path, ours=True)
    assert events[-1].kind is Kind.FULL and events[-1].step == 10
    assert calls[(10, False)] > 0


def test_callback_dropped_into_a_plain_trainer_logs_both_tiers(tiny, demo_examples, tmp_path):
    events, calls = train(tiny, demo_examples, tmp_path, ours=False, max_steps=12, log_steps=3, eval_steps=6)
    assert [(e.step, e.kind) for e in events] == [(3, Kind.FAST), (6, Kind.FULL), (9, Kind.FAST), (12, Kind.FULL)]
    assert all(e.loss is not None and e.loss > 0 and e.prompt.startswith("reverse ") for e in events)
    assert all(calls[(step, True)] == 1 for step in range(1, 13))
