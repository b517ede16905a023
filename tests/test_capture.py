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
from transformers.modeling_outputs import CausalLMOutputWithPast

from support import chat_data, lora, plain_trainer, score_alone, sft_trainer
from twotier.engine.capture import FUSED, LOGITS, Unavailable, document_ids, read_token_losses, split_row
from twotier.engine.data import collate

trl = pytest.importorskip("trl")
peft = pytest.importorskip("peft")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
RELATIVE = 1e-4


def assert_all_match(spy: Any, source: str) -> None:
    assert spy.checked, "nothing was captured"
    assert not spy.unavailable
    for scored in spy.checked:
        assert scored.source == source
        assert scored.tokens == scored.alone_tokens
        assert scored.captured == pytest.approx(scored.alone, rel=RELATIVE)


def sft(model_dir: Path, out: Path, rows: Any, spy: Any, **settings: Any) -> Any:
    trainer = sft_trainer(model_dir, out, rows, callbacks=[spy], **settings)
    trainer.train()
    return trainer


def test_logits_path_per_example_loss_equals_example_scored_alone(chat_model_dir: Path, tmp_path: Path) -> None:
    spy = score_alone()
    plain_trainer(chat_model_dir, tmp_path, [spy]).train()
    assert_all_match(spy, LOGITS)


@pytest.mark.parametrize("kind", ["messages", "prompt_completion"])
def test_fused_head_per_example_loss_equals_example_scored_alone(
    chat_model_dir: Path, tmp_path: Path, kind: str
) -> None:
    spy = score_alone()
    sft(chat_model_dir, tmp_path, chat_data(40, kind=kind), spy)
    assert_all_match(spy, FUSED)


def test_packed_document_loss_equals_document_scored_alone(chat_model_dir: Path, tmp_path: Path) -> None:
    spy = score_alone()
    sft(chat_model_dir, tmp_path, chat_data(40), spy, packing=True, per_device_train_batch_size=2)
    assert min(spy.documents_per_batch) > 2  # several conversations share one row
    assert all(c.input_ids.shape[0] == 1 for c in spy.captures)  # padding-free: the batch is one row
    assert_all_match(spy, FUSED)
    # The documents' losses differ from each other by far more than the tolerance: the check tells them apart.
    losses = sorted(scored.captured for scored in spy.checked)
    assert losses[-1] - losses[0] > 20 * RELATIVE * losses[0]


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_lora_per_example_loss_equals_example_scored_alone(chat_model_dir: Path, tmp_path: Path, packing: bool) -> None:
    spy = score_alone()
    # TRL's default gradient checkpointing stays on here: the hook sees the one top-level forward either way.
    trainer = sft(
        chat_model_dir,
        tmp_path,
        chat_data(40),
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


def test_label_smoothing_per_example_loss_is_read_from_the_fused_call(chat_model_dir: Path, tmp_path: Path) -> None:
    # TRL then runs two forwards: full logits without labels for the loss, and the fused head for its metrics.
    spy = score_alone()
    sft(chat_model_dir, tmp_path, chat_data(40), spy, label_smoothing_factor=0.1)
    assert len(spy.captures) == 3
    assert_all_match(spy, FUSED)


def test_captured_tokens_give_trl_logged_loss_under_gradient_accumulation(chat_model_dir: Path, tmp_path: Path) -> None:
    spy = score_alone()
    trainer = sft(chat_model_dir, tmp_path, chat_data(40), spy, gradient_accumulation_steps=2, max_steps=2)
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
