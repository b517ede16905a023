"""A `Trainer` whose loss is computed once, unreduced, so the fast log gets per-example loss for free."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from .capture import LOGITS, Captured, TokenLosses, document_ids, token_losses
from .loss import LossTap


class TwoTierTrainer(Trainer):
    """`Trainer` with one change: `compute_loss` keeps the token losses and feeds them to a `LossTap`.

    The returned loss is the library's own: the token mean, or the sum over `num_items_in_batch`
    when the model takes loss kwargs (so gradient accumulation averages over the whole step).
    """

    def __init__(self, *args: Any, loss_tap: LossTap, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_tap = loss_tap

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if self.label_smoother is not None or self.compute_loss_func is not None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        losses, mask = token_losses(outputs.logits, labels)
        documents = document_ids(inputs, tuple(labels.shape), losses.device)
        tokens = TokenLosses(losses.detach(), mask, LOGITS)
        self.loss_tap.record(Captured(inputs["input_ids"].detach(), labels, documents, tokens))
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = losses.sum() / torch.as_tensor(num_items_in_batch, device=losses.device)
            if self.args.average_tokens_across_devices:
                scale = self.accelerator.num_processes // self.get_tp_size()
                loss = loss * (scale if self.args.n_gpu <= 1 else self.args.n_gpu)
        else:
            loss = losses.sum() / mask.sum()
        return (loss, outputs) if return_outputs else loss
