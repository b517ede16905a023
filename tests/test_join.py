"""`TwoTier(trainer)`: the one call in a user's own Trainer or SFTTrainer script, on the chat demo model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_outputs import CausalLMOutputWithPast

from support import chat_data, lora, plain_trainer, score_alone, sft_trainer
from twotier.engine import TwoTier
from twotier.engine.errors import ConfigError
from twotier.store import Kind, LedgerReader, RunStatus, StepEvent

trl = pytest.importorskip("trl")
pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
EVAL = {"log_steps": 2, "eval_steps": 4, "eval_samples": 8, "probe_size": 4, "max_new_tokens": 4}


def joined(trainer: Any, tmp_path: Path, **options: Any) -> TwoTier:
    callback = TwoTier(trainer, ledger=tmp_path / "ledger.db", **{**EVAL, **options})
    trainer.add_callback(callback)
    return callback


def events_of(tmp_path: Path, run_id: str) -> list[StepEvent]:
    with LedgerReader(tmp_path / "ledger.db") as reader:
        return reader.events_after(run_id)


def events_of_with_probes(tmp_path: Path, run_id: str) -> list[StepEvent]:
    with LedgerReader(tmp_path / "ledger.db") as reader:
        return reader.events_after(run_id, with_probes=True)


def run_of(tmp_path: Path, run_id: str) -> Any:
    with LedgerReader(tmp_path / "ledger.db") as reader:
        return reader.run(run_id)


def sft(chat_model_dir: Path, tmp_path: Path, kind: str = "messages", **settings: Any) -> Any:
    return sft_trainer(
        chat_model_dir,
        tmp_path / "out",
        chat_data(64, kind=kind),
        eval_dataset=chat_data(8, seed=9, kind=kind),
        **settings,
    )


def test_sft_with_lora_and_the_one_call_records_the_run_its_adapter_and_every_logged_key(chat_model_dir, tmp_path):
    trainer = sft(chat_model_dir, tmp_path, peft_config=lora(r=4), max_steps=4)
    callback = joined(trainer, tmp_path)
    trainer.train()
    run = run_of(tmp_path, callback.run_id)
    assert run.status is RunStatus.FINISHED and run.max_steps == 4
    assert run.model == str(chat_model_dir)
    adapter = run.config["peft"]
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (4, 8, 0.0)
    assert adapter["target_modules"] == ["q_proj", "v_proj"]
    events = events_of(tmp_path, callback.run_id)
    assert [(e.step, e.kind) for e in events] == [(2, Kind.FAST), (4, Kind.FULL)]
    assert all({"entropy", "mean_token_accuracy", "num_tokens", "loss"} <= set(e.metrics) for e in events)


def test_each_train_call_is_a_run_of_its_own(chat_model_dir, tmp_path):
    trainer = sft(chat_model_dir, tmp_path, max_steps=1)
    callback = joined(trainer, tmp_path, eval_steps=0, log_steps=1)
    trainer.train()
    first = callback.run_id
    trainer.train()
    assert first != callback.run_id
    assert run_of(tmp_path, first).status is run_of(tmp_path, callback.run_id).status is RunStatus.FINISHED


@pytest.mark.parametrize("path", ["plain_logits", "fused_head", "packed"])
def test_the_example_loss_equals_the_example_scored_alone(chat_model_dir, tmp_path, path):
    spy = score_alone()
    if path == "plain_logits":
        trainer = plain_trainer(chat_model_dir, tmp_path, [spy])
    else:
        trainer = sft(chat_model_dir, tmp_path, callbacks=[spy], max_steps=4, packing=path == "packed")
    callback = joined(trainer, tmp_path, eval_steps=0, log_steps=1)
    trainer.train()
    events = events_of(tmp_path, callback.run_id)
    assert [e.step for e in events] == [1, 2, 3, 4]
    for event in events:
        # The example is the first document of the first row of the step's (last) forward.
        (alone,) = [s for s in spy.checked if s.step == event.step and s.row == 0 and s.document == 0]
        assert event.loss == pytest.approx(alone.alone, rel=1e-4)
    if path == "packed":
        assert max(spy.documents_per_batch) > 2  # several conversations shared the row the example came from


@pytest.mark.parametrize("kind", ["prompt_completion", "messages"])
def test_the_fast_log_shows_the_templated_prompt_and_the_answer_content(chat_model_dir, tmp_path, kind):
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    trainer = sft(chat_model_dir, tmp_path, kind=kind, max_steps=2)
    callback = joined(trainer, tmp_path, eval_steps=0, log_steps=1)
    trainer.train()
    for event in events_of(tmp_path, callback.run_id):
        # The answer's content alone: no <|im_end|>, no newline, counted in its own tokens.
        assert event.golden.isalpha()
        assert event.golden_tokens == len(tokenizer(event.golden, add_special_tokens=False)["input_ids"])
        assert event.prompt.endswith(f"user\nSpell backwards: {event.golden[::-1]}\nassistant\n")


def test_the_full_eval_generates_from_the_exact_templated_prompt(chat_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    trainer = sft(chat_model_dir, tmp_path, max_steps=4)
    callback = joined(trainer, tmp_path)
    assert callback.evaluator is not None
    prompts: list[list[int]] = []
    generate = callback.evaluator.generate
    callback.evaluator.generate = lambda model, batch: prompts.extend(batch) or generate(model, batch)  # type: ignore[method-assign]
    trainer.train()
    expected = [
        tokenizer.apply_chat_template(
            row["messages"][:-1], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for row in chat_data(4, seed=9)
    ]
    example, *probes = prompts
    assert probes == expected
    templated = {
        tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=False)
        for row in chat_data(64)
    }
    assert tokenizer.decode(example) in templated


def test_the_one_call_takes_a_match_rule_and_a_probe_file_asked_under_the_template(chat_model_dir, tmp_path):
    conversations = [
        [{"role": "user", "content": "Spell backwards: olleh"}, {"role": "assistant", "content": "hello"}],
        [{"role": "user", "content": "Say something."}],  # no answer: only asked
    ]
    probes = tmp_path / "probes.jsonl"
    probes.write_text("".join(json.dumps({"messages": messages}) + "\n" for messages in conversations))
    trainer = sft(chat_model_dir, tmp_path, max_steps=4)
    callback = joined(trainer, tmp_path, match="exact", probes=probes)
    trainer.train()
    (full,) = [e for e in events_of_with_probes(tmp_path, callback.run_id) if e.is_full]
    assert full.match_rule == "exact" and run_of(tmp_path, callback.run_id).config["twotier"]["match"] == "exact"
    answered, open_ended = full.probes[-2:]
    assert (answered.golden, open_ended.golden) == ("hello", None)
    assert answered.match is not None and answered.score is not None
    assert (open_ended.match, open_ended.score) == (None, None)
    assert open_ended.prompt.endswith("user\nSay something.\nassistant\n")


def test_a_bad_match_rule_is_refused_by_the_one_call_in_one_line(chat_model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^TwoTier: 'match' has an unknown rule 'exactly'; did you mean 'exact'\?"):
        joined(sft(chat_model_dir, tmp_path, max_steps=1), tmp_path, match="exactly")


def test_a_conversation_trained_whole_warns_once_and_the_gap_compares_the_same_tokens(chat_model_dir, tmp_path, caplog):
    trainer = sft(chat_model_dir, tmp_path, max_steps=16, learning_rate=1e-2)
    callback = joined(trainer, tmp_path, eval_steps=8, log_steps=4)
    with caplog.at_level(logging.WARNING, logger="twotier.engine"):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if "covers the prompt" in r.getMessage()]
    assert len(warnings) == 1 and "assistant_only_loss" in warnings[0] and "completion_only_loss" in warnings[0]
    full = [e for e in events_of(tmp_path, callback.run_id) if e.is_full][-1]  # the mean of steps 9-16 against it
    assert abs(full.gap) < 0.25 and full.gap_ok
    # Over the answers alone the same validation set scores far from the training loss: the false alarm avoided.
    assert callback.evaluator is not None
    callback.evaluator.covers_prompt = False
    answers_only = callback.evaluator.run(trainer.model, full_prompt_ids(callback)).val_loss
    assert abs(answers_only - full.train_loss_mean) > 0.25


def full_prompt_ids(callback: TwoTier) -> list[int]:
    assert callback.evaluator is not None
    return callback.evaluator.probes[0].prompt_ids


def test_a_training_error_marks_the_run_failed_with_the_error(chat_model_dir, tmp_path):
    class Failing(trl.SFTTrainer):
        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            if self.state.global_step == 2:
                raise RuntimeError("boom at step 3")
            return super().training_step(model, inputs, num_items_in_batch)

    trainer = sft(chat_model_dir, tmp_path, trainer_class=Failing, max_steps=4)
    callback = joined(trainer, tmp_path, eval_steps=0, log_steps=1)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    run = run_of(tmp_path, callback.run_id)
    assert run.status is RunStatus.FAILED and run.error == "RuntimeError: boom at step 3"
    assert [e.step for e in events_of(tmp_path, callback.run_id)] == [1, 2]


def test_a_trainer_it_cannot_serve_is_refused_at_construction_in_one_line(chat_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="needs a transformers Trainer") as refused:
        TwoTier(object(), ledger=tmp_path / "ledger.db")
    assert "\n" not in str(refused.value)
    trainer = sft_trainer(chat_model_dir, tmp_path / "out", chat_data(16))
    with pytest.raises(ConfigError, match="eval_dataset"):
        TwoTier(trainer, ledger=tmp_path / "ledger.db")
    assert not (tmp_path / "ledger.db").exists()


def test_a_packed_eval_dataset_gives_one_example_per_conversation(chat_model_dir, tmp_path):
    trainer = sft(chat_model_dir, tmp_path, packing=True)
    assert "messages" not in trainer.eval_dataset.column_names  # TRL keeps only ids once packed
    callback = joined(trainer, tmp_path)
    assert callback.evaluator is not None
    answers = {row["messages"][-1]["content"] for row in chat_data(8, seed=9)}
    assert {example.golden_text for example in callback.evaluator.scored} <= answers
    assert all(example.prompt_text.endswith("assistant\n") for example in callback.evaluator.scored)


class LossOnly(torch.nn.Module):
    """A model whose training forward returns only the reduced loss, as a fused linear cross-entropy kernel does."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, **kwargs: Any) -> Any:
        output = self.model(**kwargs)
        return CausalLMOutputWithPast(loss=output.loss) if self.training else output

    def generate(self, **kwargs: Any) -> Any:
        return self.model.generate(**kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device


def test_a_forward_with_nothing_per_token_logs_no_example_loss_and_says_so_once(chat_model_dir, tmp_path, caplog):
    model = LossOnly(AutoModelForCausalLM.from_pretrained(chat_model_dir))
    trainer = plain_trainer(chat_model_dir, tmp_path, [], model=model)
    callback = joined(trainer, tmp_path)
    with caplog.at_level(logging.WARNING, logger="twotier.engine"):
        trainer.train()
    events = events_of(tmp_path, callback.run_id)
    assert [e.step for e in events] == [2, 4] and all(e.loss is None for e in events)
    assert all(e.batch_loss == e.metrics["loss"] and e.golden.isalpha() for e in events)
    assert events[-1].val_loss is not None
    assert sum("fused linear cross-entropy" in r.getMessage() for r in caplog.records) == 1
