"""The per-example loss comes from the step's own logits, and the training loss is the library's."""

from __future__ import annotations

import torch
from transformers import Trainer, TrainingArguments

from twotier.engine.capture import LOGITS, Captured, TokenLosses, document_ids, token_losses
from twotier.engine.data import collate
from twotier.engine.loss import LossTap
from twotier.engine.trainer import TwoTierTrainer


def batch_of(examples, tokenizer, count=6):
    return collate(list(examples.select(range(count))), tokenizer.pad_token_id)


def record(tap, model, batch):
    """What `TwoTierTrainer.compute_loss` hands the tap: the forward's own token losses."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    tokens = TokenLosses(*token_losses(logits, batch["labels"]), LOGITS)
    documents = document_ids(batch, tuple(batch["input_ids"].shape), logits.device)
    tap.record(Captured(batch["input_ids"], batch["labels"], documents, tokens))


def test_mean_of_unreduced_token_losses_equals_the_library_loss(tiny, demo_examples):
    batch = batch_of(demo_examples.train, tiny.tokenizer)
    with torch.no_grad():
        library = tiny.model(**batch).loss
        logits = tiny.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    losses, mask = token_losses(logits, batch["labels"])
    torch.testing.assert_close(losses.sum() / mask.sum(), library)


def test_example_loss_equals_that_example_scored_alone(tiny, demo_examples):
    batch = batch_of(demo_examples.train, tiny.tokenizer)
    tap = LossTap()
    with torch.no_grad():
        record(tap, tiny.model, batch)
        alone = batch_of(demo_examples.train.select([0]), tiny.tokenizer, 1)
        expected = tiny.model(**alone).loss.item()
    assert abs(tap.read(since_eval=False).loss - expected) < 1e-4


def test_loss_with_gradient_accumulation_matches_the_library(tiny, demo_examples, tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), gradient_accumulation_steps=4, report_to="none", per_device_train_batch_size=6
    )
    batch = batch_of(demo_examples.train, tiny.tokenizer)
    num_items = torch.tensor(97)  # tokens of the whole accumulated step, as the Trainer counts them
    ours = TwoTierTrainer(model=tiny.model, args=args, loss_tap=LossTap())
    library = Trainer(model=tiny.model, args=args)
    assert ours.model_accepts_loss_kwargs
    with torch.no_grad():
        expected = library.compute_loss(tiny.model, dict(batch), num_items_in_batch=num_items)
        actual = ours.compute_loss(tiny.model, dict(batch), num_items_in_batch=num_items)
    torch.testing.assert_close(actual, expected)


def test_step_loss_adds_up_the_micro_batches_of_one_step(tiny, demo_examples):
    tap = LossTap()
    first, second = (
        batch_of(demo_examples.train.select(range(3)), tiny.tokenizer, 3),
        batch_of(demo_examples.train.select(range(3, 6)), tiny.tokenizer, 3),
    )
    whole = batch_of(demo_examples.train.select(range(6)), tiny.tokenizer, 6)
    with torch.no_grad():
        for batch in (first, second):
            record(tap, tiny.model, batch)
        expected = tiny.model(**whole).loss.item()
    assert abs(tap.read(since_eval=False).batch_loss - expected) < 1e-4
