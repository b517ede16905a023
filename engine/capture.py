"""Per-token losses read from the output a training forward already made, on every path Trainer and TRL take.

Plain logits (a `Trainer`), TRL's fused LM head (`log_probs`/`label_mask`, no logits), LoRA models and packed
rows (one row, documents split where `position_ids` restart) all come out in one layout for the `LossTap`.
Nothing here runs the model. Where the output holds nothing per token (a fused linear cross-entropy kernel
returns only the reduced loss), the answer says so: never a number guessed from the batch loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .encode import IGNORE_INDEX

if TYPE_CHECKING:
    from .loss import LossTap

LOGITS = "logits"
FUSED = "fused_lm_head"


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


@dataclass(frozen=True)
class TokenLosses:
    """One forward's unreduced cross-entropy, shaped (batch, seq) like its inputs.

    `losses[b, t]` scores the prediction, made at position t, of the token at t + 1 (0 where `mask` is False).
    """

    losses: torch.Tensor
    mask: torch.Tensor
    source: str  # LOGITS or FUSED: which output they were read from


@dataclass(frozen=True)
class Unavailable:
    """Nothing per token can be read from this forward's output; `reason` says why in one line."""

    reason: str


@dataclass(frozen=True)
class Captured:
    """What the tap keeps of one training micro-batch: device tensors, no host sync taken.

    `tokens` is Unavailable where the output held no per-token figure: the example can still be shown."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    documents: torch.Tensor  # (batch, seq): the document each position belongs to in its row, -1 on padding
    tokens: TokenLosses | Unavailable


def from_logits(
    logits: torch.Tensor, labels: torch.Tensor | None = None, *, shift_labels: torch.Tensor | None = None
) -> TokenLosses:
    """Full logits and the batch's labels (unshifted), or labels already shifted by the caller."""
    if shift_labels is None:
        if labels is None:
            raise ValueError("from_logits needs labels or shift_labels")
        losses, mask = token_losses(logits.detach(), labels)
        return TokenLosses(losses, mask, LOGITS)
    # Context/sequence parallelism passes labels already shifted: position t's target is shift_labels[t].
    losses = F.cross_entropy(
        logits.detach().float().reshape(-1, logits.size(-1)),
        shift_labels.reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    return TokenLosses(losses, shift_labels.to(logits.device) != IGNORE_INDEX, LOGITS)


def from_fused(
    log_probs: torch.Tensor, label_mask: torch.Tensor, width: int, *, pre_shifted: bool = False
) -> TokenLosses | Unavailable:
    """TRL's fused LM head (`FusedCausalLMOutput`), which returns the log-probability of each label.

    The head shifts itself: `log_probs[:, t]` is log p(labels[:, t + 1]), `(batch, seq - 1)`, zero where
    `label_mask` is False; with pre-shifted `shift_labels` it is `(batch, seq)` and unshifted. Prompt-learning
    PEFT (prompt/prefix tuning) prepends virtual tokens, so the caller's positions are the last columns.
    """
    expected = width if pre_shifted else width - 1
    got = log_probs.shape[-1]
    if got < expected:
        return Unavailable(f"the fused LM head scored {got} positions for {width} input tokens; cannot align them")
    if got > expected:
        log_probs, label_mask = log_probs[:, got - expected :], label_mask[:, got - expected :]
    pad = width - expected
    losses = F.pad(-log_probs.detach().float(), (0, pad))
    mask = F.pad(label_mask.bool(), (0, pad), value=False)
    # -log p is 0 where masked; `where` also keeps a stray non-finite value out of the sums.
    return TokenLosses(torch.where(mask, losses, torch.zeros_like(losses)), mask, FUSED)


def read_token_losses(kwargs: Mapping[str, Any], output: Any) -> TokenLosses | Unavailable | None:
    """The per-token losses of one forward call, from its keyword arguments and its output.

    None when the call scores nothing (no labels): generation, or the logits-only forward TRL runs beside a
    custom loss (`compute_loss_func`, label smoothing) before the fused call that carries the labels.
    """
    labels, shift_labels = kwargs.get("labels"), kwargs.get("shift_labels")
    targets = shift_labels if shift_labels is not None else labels
    if targets is None:
        return None
    log_probs = getattr(output, "log_probs", None)
    if log_probs is not None:
        label_mask = getattr(output, "label_mask", None)
        if label_mask is None:
            return Unavailable("the output has log_probs but no label_mask, so the scored positions are unknown")
        return from_fused(log_probs, label_mask, targets.shape[-1], pre_shifted=shift_labels is not None)
    logits = getattr(output, "logits", None)
    if logits is not None:
        return from_logits(logits, labels, shift_labels=shift_labels)
    if getattr(output, "loss", None) is not None:
        return Unavailable(
            "the forward returned only the reduced loss, no logits or log-probabilities (a fused linear "
            "cross-entropy kernel such as Liger's): per-example loss cannot be read"
        )
    return Unavailable(f"the forward returned {type(output).__name__} with no logits, log_probs or loss")


def document_ids(kwargs: Mapping[str, Any], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The document each position belongs to within its row (-1 on padding), on the device, with no host sync.

    Follows how transformers itself isolates packed documents: with a 2-D attention mask every row is one
    document; without one (padding-free), a document starts wherever `position_ids` do not continue by one,
    or, lacking them, at the `cu_seq_lens_q` boundaries of the flattened row.
    """
    batch, width = shape[0], shape[1]
    attention_mask = kwargs.get("attention_mask")
    position_ids = kwargs.get("position_ids")
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    if attention_mask is not None and attention_mask.dim() == 2:
        return attention_mask.to(device).bool().long() - 1  # 0 on real tokens, -1 on padding
    if position_ids is not None:
        positions = position_ids.to(device).expand(batch, width)
        starts = torch.ones_like(positions, dtype=torch.bool)
        starts[:, 1:] = positions[:, 1:] != positions[:, :-1] + 1
        return starts.long().cumsum(dim=-1) - 1
    if cu_seq_lens is not None and batch == 1:
        bounds = cu_seq_lens.to(device)
        index = torch.arange(width, device=device, dtype=bounds.dtype)
        return torch.searchsorted(bounds[1:].contiguous(), index, right=True).long().unsqueeze(0)
    return torch.zeros((batch, width), dtype=torch.long, device=device)


def document_loss(
    tokens: TokenLosses, documents: torch.Tensor, row: int = 0, document: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss of one document and the number of tokens it counts; both stay on the device.

    A position scores the next token, so a document's last position (which would score the next document's
    first token) is left out: the sum is what the document scored alone would give.
    """
    ids = documents[row]
    inside = ids == document
    same_next = F.pad(ids[1:] == ids[:-1], (0, 1), value=False)
    keep = inside & same_next & tokens.mask[row]
    losses = tokens.losses[row]
    return torch.where(keep, losses, torch.zeros_like(losses)).sum(), keep.sum()


def capture(kwargs: Mapping[str, Any], args: tuple[Any, ...], output: Any) -> Captured | Unavailable | None:
    """Everything a forward hook (registered with `with_kwargs=True`) keeps of a training call."""
    tokens = read_token_losses(kwargs, output)
    if tokens is None:
        return None
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    if input_ids is None:
        return Unavailable("the forward was called with inputs_embeds, no input_ids: the example's text is unknown")
    labels = kwargs.get("labels", kwargs.get("shift_labels"))
    documents = document_ids(kwargs, tuple(input_ids.shape), input_ids.device)
    return Captured(input_ids.detach(), labels.detach(), documents, tokens)


class ForwardHook:
    """Feeds a `LossTap` from the training forward passes of `model` (the trainer's, a PEFT wrapper included)."""

    def __init__(self, model: torch.nn.Module, tap: LossTap) -> None:
        self.tap = tap
        self._handle = model.register_forward_hook(self._capture, with_kwargs=True)

    def remove(self) -> None:
        self._handle.remove()

    def _capture(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if not module.training:
            return
        captured = capture(kwargs, args, output)
        if isinstance(captured, Unavailable):
            self.tap.note_unavailable(captured.reason)
        elif captured is not None:
            self.tap.record(captured)


@dataclass(frozen=True)
class Document:
    """One document of a row, on the host: its span and what it holds, for the fast log's prompt and golden."""

    index: int  # its id in `document_ids`, for `document_loss`
    start: int
    end: int  # exclusive
    input_ids: list[int]
    labels: list[int]

    @property
    def targets(self) -> list[int]:
        """The tokens the loss scores in this document: its labels after the first position, not ignored."""
        return [label for label in self.labels[1:] if label != IGNORE_INDEX]


def split_row(input_ids: list[int], labels: list[int], documents: list[int]) -> list[Document]:
    """A row's documents in order (padding, -1, dropped); `documents` is that row of `document_ids`, on the host."""
    spans: list[Document] = []
    start = 0
    for index in range(1, len(documents) + 1):
        if index == len(documents) or documents[index] != documents[start]:
            if documents[start] >= 0:
                spans.append(Document(documents[start], start, index, input_ids[start:index], labels[start:index]))
            start = index
    return spans
