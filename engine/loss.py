"""Per-example loss from the step's own logits, and the tap that hands it to the fast log.

The library reduces the token losses to one number inside its forward pass. We compute the
per-token cross-entropy once, with no reduction, and derive from it both the training loss
(the same number the library would compute) and each example's mean loss: a fast log then
costs no extra forward pass and no second cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per position (batch, seq) with labels shifted as in causal LM training, and its mask."""
    shifted = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    losses = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        shifted.reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shifted.shape)
    return losses, shifted != IGNORE_INDEX


@dataclass
class Batch:
    """What the tap keeps of the last micro-batch: device tensors, never copied to the host here."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    example_loss_sum: torch.Tensor
    example_tokens: torch.Tensor


class LossTap:
    """Collects, on the device and without syncing, what the tiers read at log and eval steps."""

    def __init__(self) -> None:
        self.last: Batch | None = None
        self._step_sum: torch.Tensor | float = 0.0
        self._step_tokens: torch.Tensor | float = 0.0
        self._since_eval_sum: torch.Tensor | float = 0.0
        self._since_eval_tokens: torch.Tensor | float = 0.0
        self._input_tokens: torch.Tensor | float = 0.0

    def record(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        losses: torch.Tensor,
        mask: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> None:
        """Called once per micro-batch with the unreduced token losses of its forward pass."""
        # Ignored positions already hold 0: cross_entropy writes 0 there with reduction='none'.
        per_example = losses.detach().sum(dim=1)
        tokens = mask.sum(dim=1)
        self.last = Batch(input_ids, labels, per_example, tokens)
        batch_sum, batch_tokens = per_example.sum(), tokens.sum()
        self._step_sum = self._step_sum + batch_sum
        self._step_tokens = self._step_tokens + batch_tokens
        self._since_eval_sum = self._since_eval_sum + batch_sum
        self._since_eval_tokens = self._since_eval_tokens + batch_tokens
        seen = attention_mask.sum() if attention_mask is not None else input_ids.numel()
        self._input_tokens = self._input_tokens + seen

    def read(self, *, since_eval: bool) -> Reading:
        """The one host sync of a log step: the example's tokens and loss, the step's and the running losses.

        Everything travels in one float32 tensor: token ids are exact in float32 below 2**24.
        """
        if self.last is None:
            raise RuntimeError("the loss tap has seen no training batch yet")
        device = self.last.example_loss_sum.device
        scalars = torch.stack(
            [
                torch.as_tensor(value, dtype=torch.float32, device=device)
                for value in (
                    self.last.example_loss_sum[0],
                    self.last.example_tokens[0],
                    self._step_sum,
                    self._step_tokens,
                    self._since_eval_sum,
                    self._since_eval_tokens,
                    self._input_tokens,
                )
            ]
        )
        row = torch.cat([self.last.input_ids[0], self.last.labels[0].to(device)]).float()
        values = torch.cat([scalars, row]).tolist()
        example_sum, example_tokens, step_sum, step_tokens, eval_sum, eval_tokens, input_tokens = values[:7]
        width = self.last.input_ids.shape[1]
        row_ids, row_labels = [int(v) for v in values[7 : 7 + width]], [int(v) for v in values[7 + width :]]
        self._input_tokens = 0.0
        if since_eval:
            self._since_eval_sum, self._since_eval_tokens = 0.0, 0.0
        return Reading(
            loss=_mean(example_sum, example_tokens),
            batch_loss=_mean(step_sum, step_tokens),
            train_loss_mean=_mean(eval_sum, eval_tokens) if since_eval else None,
            input_tokens=int(input_tokens),
            input_ids=row_ids,
            labels=row_labels,
        )

    def begin_step(self) -> None:
        """Start an optimizer step's loss from zero (gradient accumulation adds its micro-batches)."""
        self._step_sum, self._step_tokens = 0.0, 0.0


@dataclass(frozen=True)
class Reading:
    """One log step's figures, named as the event's fields: the example's loss, the step's, the mean since the last eval."""

    loss: float
    batch_loss: float
    train_loss_mean: float | None
    input_tokens: int
    input_ids: list[int]  # the example's row of the batch (padded), and its labels
    labels: list[int]


def _mean(total: float, count: float) -> float:
    return total / count if count else float("nan")
