"""Reading the step's own per-example losses where twotier does not compute the loss itself.

In a plain `Trainer` (or a user's subclass) the loss is the library's; a forward hook on the model
computes the unreduced cross-entropy from the logits the step already has (about 2% of a step, no
extra forward) and hands it to the `LossTap`, as `TwoTierTrainer.compute_loss` does for free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .data import IGNORE_INDEX
from .loss import LossTap, token_losses


@dataclass(frozen=True)
class Example:
    """The logged example of a step: its prompt tokens and its golden (labelled) tokens."""

    prompt_ids: list[int]
    golden_ids: list[int]


def split_example(input_ids: list[int], labels: list[int], pad_id: int | None) -> Example:
    """A batch row as prompt and golden: the prompt is what precedes the first label, padding dropped."""
    first_label = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    prompt = [token for token in input_ids[:first_label] if token != pad_id]
    return Example(prompt, [label for label in labels if label != IGNORE_INDEX])


class ForwardHook:
    """Feeds a `LossTap` from the training forward passes of `model`; `remove()` detaches it."""

    def __init__(self, model: torch.nn.Module, tap: LossTap) -> None:
        self.tap = tap
        self._handle = model.register_forward_hook(self._capture, with_kwargs=True)

    def remove(self) -> None:
        self._handle.remove()

    def _capture(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        labels = kwargs.get("labels")
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if not module.training or labels is None or input_ids is None:
            return
        losses, mask = token_losses(output.logits.detach(), labels)
        self.tap.record(input_ids, labels, losses, mask, kwargs.get("attention_mask"))
