"""The tap between the training step and the fast log: the step's own per-token losses, kept on the device.

The library reduces the token losses to one number inside its step. The tap is handed the unreduced losses
of each micro-batch (by `TwoTierTrainer.compute_loss`, or by a `capture.ForwardHook` in any other trainer)
and derives from them the step's loss (the library's own number), the running mean since the last full
eval, and one example's loss: a fast log then costs no extra forward pass and no second cross-entropy. In a
multi-process run the step's and running figures are summed over every rank at the read (one all-reduce).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .capture import Captured, Unavailable, document_loss, split_row
from .distributed import is_distributed, sum_across_ranks


@dataclass
class Batch:
    """What the tap keeps of the last micro-batch: device tensors, never copied to the host here."""

    captured: Captured
    example_loss_sum: torch.Tensor | None
    example_tokens: torch.Tensor | None


class LossTap:
    """Collects, on the device and without syncing, what the tiers read at log and eval steps.

    The example of a step is the first document of the first row of its last micro-batch: the row itself,
    or in a packed row (several documents, split where `position_ids` restart) its first document alone.
    """

    def __init__(self) -> None:
        self.last: Batch | None = None
        self.unavailable: str | None = None  # why no per-token loss could be read, once known
        self._step_sum: torch.Tensor | float = 0.0
        self._step_tokens: torch.Tensor | float = 0.0
        self._since_eval_sum: torch.Tensor | float = 0.0
        self._since_eval_tokens: torch.Tensor | float = 0.0
        self._input_tokens: torch.Tensor | float = 0.0

    def record(self, captured: Captured) -> None:
        """Called once per micro-batch with what its forward pass computed anyway."""
        tokens = captured.tokens
        self._input_tokens = self._input_tokens + (captured.documents >= 0).sum()
        if isinstance(tokens, Unavailable):
            self.note_unavailable(tokens.reason)
            self.last = Batch(captured, None, None)
            return
        # Ignored positions already hold 0 (cross_entropy writes 0 there; the fused head does too).
        example_sum, example_tokens = document_loss(tokens, captured.documents, 0, 0)
        self.last = Batch(captured, example_sum, example_tokens)
        batch_sum, batch_tokens = tokens.losses.detach().sum(), tokens.mask.sum()
        self._step_sum = self._step_sum + batch_sum
        self._step_tokens = self._step_tokens + batch_tokens
        self._since_eval_sum = self._since_eval_sum + batch_sum
        self._since_eval_tokens = self._since_eval_tokens + batch_tokens

    def note_unavailable(self, reason: str) -> None:
        self.unavailable = self.unavailable or reason

    def read(self, *, since_eval: bool) -> Reading:
        """The one host sync of a log step: the example's row and loss, the step's and the running losses.

        Everything travels in one tensor (token ids are exact in float32 below 2**24). In a multi-process run it is a
        collective: the step's and running sums and token counts are this step's over every rank (one float64
        all-reduce, so the losses are token-weighted over all ranks); the example is this rank's own.
        """
        if self.last is None:
            raise RuntimeError("the loss tap has seen no training batch yet")
        captured = self.last.captured
        device = captured.documents.device
        measured = self.last.example_loss_sum is not None
        values = [
            self.last.example_loss_sum if measured else 0.0,
            self.last.example_tokens if measured else 0.0,
            self._step_sum,
            self._step_tokens,
            self._since_eval_sum,
            self._since_eval_tokens,
            self._input_tokens,
        ]
        # One process keeps float32 (Apple's MPS has no float64); several sum their figures in float64.
        dtype = torch.float64 if is_distributed() else torch.float32
        scalars = torch.stack([torch.as_tensor(value, dtype=dtype, device=device) for value in values])
        if is_distributed():  # the step's, the running and the input figures of every rank
            scalars = torch.cat([scalars[:2], sum_across_ranks(scalars[2:])])
        row = [captured.input_ids[0].to(device), captured.labels[0].to(device), captured.documents[0]]
        flat = torch.cat([scalars, *(part.to(dtype) for part in row)]).tolist()
        example_sum, example_tokens, step_sum, step_tokens, eval_sum, eval_tokens, input_tokens = flat[:7]
        width = captured.input_ids.shape[1]
        ids, labels, documents = ([int(v) for v in flat[7 + k * width : 7 + (k + 1) * width]] for k in range(3))
        example = next((doc for doc in split_row(ids, labels, documents) if doc.index == 0), None)
        self._input_tokens = 0.0
        if since_eval:
            self._since_eval_sum, self._since_eval_tokens = 0.0, 0.0
        return Reading(
            loss=_mean(example_sum, example_tokens) if measured else None,
            batch_loss=_mean(step_sum, step_tokens) if measured else None,
            train_loss_mean=_mean(eval_sum, eval_tokens) if since_eval and measured else None,
            input_tokens=int(input_tokens),
            input_ids=example.input_ids if example is not None else [],
            labels=example.labels if example is not None else [],
            packed=len({d for d in documents if d >= 0}) > 1,
        )

    def begin_step(self) -> None:
        """Start an optimizer step's loss from zero (gradient accumulation adds its micro-batches)."""
        self._step_sum, self._step_tokens = 0.0, 0.0


@dataclass(frozen=True)
class Reading:
    """One log step's figures, named as the event's fields: the example's loss, the step's, the mean since the
    last eval (None where the forward gave nothing per token), and the example's document (no padding)."""

    loss: float | None
    batch_loss: float | None
    train_loss_mean: float | None
    input_tokens: int
    input_ids: list[int]
    labels: list[int]
    packed: bool = False  # the example is one document of a packed row


def _mean(total: float, count: float) -> float:
    return total / count if count else float("nan")
