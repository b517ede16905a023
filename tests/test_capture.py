"""The per-example loss read from a training step's own output equals the example scored alone.

Real short runs of the chat demo model (byte-level BPE, ChatML, random Qwen2, loaded by path) under
transformers' Trainer and TRL's SFTTrainer, with and without LoRA and packing. A test-only hook re-scores each
captured document with a separate forward to check the number; production reads it with no extra forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments
from transformers.modeling_outputs import CausalLMOutputWithPast

from twotier.engine.capture import (
    FUSED,
    LOGITS,
    Captured,
    Unavailable,
    capture,
    document_ids,
    document_loss,
    read_token_losses,
    split_row,
    token_losses,
)
from twotier.engine.chat_demo import chat_rows, write_chat_model
from twotier.engine.data import IGNORE_INDEX, collate

trl = pytest.importorskip("trl")
peft = pytest.importorskip("peft")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
ROWS = chat_rows(40, seed=3)
RELATIVE = 1e-4


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_model(tmp_path_factory.mktemp("chat") / "model", seed=0)


class ScoreAlone(TrainerCallback):
    """Test-only: captures each training forward, then scores every captured document alone."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, float, float, int, int]] = []  # source, captured, alone, tokens both ways
        self.documents_per_batch: list[int] = []
        self.captures: list[Captured] = []
        self.unavailable: list[str] = []
        self._hook: Any = None
        self._busy = False

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._hook.remove()

    def _on_forward(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if self._busy or not module.training:
            return
        captured = capture(kwargs, args, output)
        if captured is None:
            return
        if isinstance(captured, Unavailable):
            self.unavailable.append(captured.reason)
            return
        self.captures.append(captured)
        self._busy = True  # the re-scoring forward below must not be captured itself
        try:
            self._score_alone(module, captured)
        finally:
            self._busy = False

    def _score_alone(self, module: torch.nn.Module, captured: Captured) -> None:
        documents = captured.documents.cpu()
        count = 0
        for row in range(captured.input_ids.shape[0]):
            ids, labels = captured.input_ids[row].tolist(), captured.labels[row].tolist()
            for doc in split_row(ids, labels, documents[row].tolist()):
                if not doc.targets:
                    continue
                count += 1
                total, tokens = document_loss(captured.tokens, captured.documents, row, doc.index)
                module.eval()
                try:
                    with torch.no_grad():
                        ids = torch.tensor([doc.input_ids])
                        logits = module(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
                finally:
                    module.train()
                losses, mask = token_losses(logits, torch.tensor([doc.labels]))
                alone = (losses.sum() / mask.sum()).item()
                own = (total / tokens).item()
                self.checked.append((captured.tokens.source, own, alone, int(tokens), int(mask.sum())))
        self.documents_per_batch.append(count)


def assert_all_match(spy: ScoreAlone, source: str) -> None:
    assert spy.checked, "nothing was captured"
    assert not spy.unavailable
    for got_source, captured, alone, tokens, alone_tokens in spy.checked:
        assert got_source == source
        assert tokens == alone_tokens
        assert captured == pytest.approx(alone, rel=RELATIVE)


def sft(
    model_dir: Path, out: Path, rows: Dataset, spy: TrainerCallback, *, peft_config: Any = None, **settings: Any
) -> Any:
    """A few SFTTrainer steps on CPU; gradient checkpointing off unless asked (TRL turns it on by default)."""
    config = {
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 5e-3,
        "max_length": 128,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        **settings,
    }
    args = trl.SFTConfig(
        output_dir=str(out),
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **config,
    )
    trainer = trl.SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=rows,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[spy],
        peft_config=peft_config,
    )
    trainer.train()
    return trainer


def messages() -> Dataset:
    return Dataset.from_list(ROWS)


def prompt_completion() -> Dataset:
    return Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in ROWS])


def lora() -> Any:
    return peft.LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )


def test_logits_path_per_example_loss_equals_example_scored_alone(chat_model: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    examples = []
    for row in ROWS[:16]:
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        answer = row["messages"][-1]["content"] + tokenizer.eos_token
        prompt_ids, answer_ids = tokenizer(prompt)["input_ids"], tokenizer(answer)["input_ids"]
        examples.append({"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids})
    spy = ScoreAlone()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(chat_model),
        args=args,
        train_dataset=examples,
        data_collator=lambda batch: collate(batch, tokenizer.pad_token_id),
        callbacks=[spy],
    )
    trainer.train()
    assert_all_match(spy, LOGITS)


@pytest.mark.parametrize("rows", [messages, prompt_completion], ids=["messages", "prompt_completion"])
def test_fused_head_per_example_loss_equals_example_scored_alone(chat_model: Path, tmp_path: Path, rows: Any) -> None:
    spy = ScoreAlone()
    sft(chat_model, tmp_path, rows(), spy)
    assert_all_match(spy, FUSED)


def test_packed_document_loss_equals_document_scored_alone(chat_model: Path, tmp_path: Path) -> None:
    spy = ScoreAlone()
    sft(chat_model, tmp_path, messages(), spy, packing=True, per_device_train_batch_size=2)
    assert min(spy.documents_per_batch) > 2  # several conversations share one row
    assert all(c.input_ids.shape[0] == 1 for c in spy.captures)  # padding-free: the batch is one row
    assert_all_match(spy, FUSED)
    # The documents' losses differ from each other by far more than the tolerance: the check tells them apart.
    losses = sorted(captured for _, captured, _, _, _ in spy.checked)
    assert losses[-1] - losses[0] > 20 * RELATIVE * losses[0]


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_lora_per_example_loss_equals_example_scored_alone(chat_model: Path, tmp_path: Path, packing: bool) -> None:
    spy = ScoreAlone()
    # TRL's default gradient checkpointing stays on here: the hook sees the one top-level forward either way.
    trainer = sft(
        chat_model,
        tmp_path,
        messages(),
        spy,
        peft_config=lora(),
        packing=packing,
        gradient_checkpointing=True,
        per_device_train_batch_size=2 if packing else 4,
    )
    assert isinstance(trainer.model, peft.PeftModel)
    assert_all_match(spy, FUSED)
    lora_b = [p for name, p in trainer.model.named_parameters() if "lora_B" in name]
    assert any(p.abs().sum() > 0 for p in lora_b)  # the adapter moved, so later steps checked it too


def test_label_smoothing_per_example_loss_is_read_from_the_fused_call(chat_model: Path, tmp_path: Path) -> None:
    # TRL then runs two forwards: full logits without labels for the loss, and the fused head for its metrics.
    spy = ScoreAlone()
    sft(chat_model, tmp_path, messages(), spy, label_smoothing_factor=0.1)
    assert len(spy.captures) == 3
    assert_all_match(spy, FUSED)


def test_captured_tokens_give_trl_logged_loss_under_gradient_accumulation(chat_model: Path, tmp_path: Path) -> None:
    spy = ScoreAlone()
    trainer = sft(chat_model, tmp_path, messages(), spy, gradient_accumulation_steps=2, max_steps=2)
    # One optimizer step is 2 micro-batches; TRL divides their summed token losses by num_items_in_batch.
    per_step = [spy.captures[i : i + 2] for i in range(0, len(spy.captures), 2)]
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(per_step) == len(logged) == 2
    for micro_batches, loss in zip(per_step, logged):
        total = sum(c.tokens.losses.sum().item() for c in micro_batches)
        count = sum(c.tokens.mask.sum().item() for c in micro_batches)
        assert total / count == pytest.approx(loss, rel=RELATIVE)


def test_a_forward_returning_only_the_loss_is_unavailable() -> None:
    # What a fused linear cross-entropy kernel (Liger) returns in training: the reduced loss, logits None.
    output = CausalLMOutputWithPast(loss=torch.tensor(2.5), logits=None)
    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long), "labels": torch.ones(1, 4, dtype=torch.long)}
    result = read_token_losses(batch, output)
    assert isinstance(result, Unavailable)
    assert "fused linear cross-entropy" in result.reason


def test_a_forward_without_labels_is_not_scored() -> None:
    output = CausalLMOutputWithPast(logits=torch.zeros(1, 4, 8))
    assert read_token_losses({"input_ids": torch.ones(1, 4, dtype=torch.long)}, output) is None


def test_documents_split_where_position_ids_restart_and_at_cu_seq_lens() -> None:
    collator = trl.trainer.sft_trainer.DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collator([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}, {"input_ids": [10, 11, 12, 13]}])
    from_positions = document_ids(batch, tuple(batch["input_ids"].shape), torch.device("cpu"))
    from_boundaries = document_ids(
        {"cu_seq_lens_q": batch["cu_seq_lens_q"]}, tuple(batch["input_ids"].shape), torch.device("cpu")
    )
    assert from_positions.tolist() == [[0, 0, 0, 1, 1, 2, 2, 2, 2]]
    assert from_boundaries.tolist() == from_positions.tolist()
    docs = split_row(batch["input_ids"][0].tolist(), batch["labels"][0].tolist(), from_positions[0].tolist())
    assert [(d.start, d.end, d.input_ids, d.targets) for d in docs] == [
        (0, 3, [5, 6, 7], [6, 7]),
        (3, 5, [8, 9], [9]),
        (5, 9, [10, 11, 12, 13], [11, 12, 13]),
    ]


def test_padded_rows_are_one_document_each_with_padding_left_out() -> None:
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}], 0)
    ids = document_ids(batch, tuple(batch["input_ids"].shape), torch.device("cpu"))
    assert ids.tolist() == [[0, 0, 0], [0, 0, -1]]
    assert [(d.start, d.end) for d in split_row([8, 9, 0], [-100, 9, -100], ids[1].tolist())] == [(0, 2)]
