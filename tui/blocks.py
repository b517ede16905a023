"""The block layout of one event, shared by the headless printout and the app's example pane."""

from __future__ import annotations

import math

from ..store.records import StepEvent
from .text import clip, printable

RULE = "=" * 80
TEXT_LIMIT = 400


def fmt_loss(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def fmt_gap(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.4f}"


def gap_mark(ok: bool | None) -> str:
    return "" if ok is None else ("✅" if ok else "⚠️")


def event_block(event: StepEvent, limit: int = TEXT_LIMIT) -> list[str]:
    """The lines of one fast log or full eval; data text is made printable and cut at `limit`."""
    title = f"🔍 FULL EVAL - Step {event.step}" if event.is_full else f"📍 FAST LOG - Step {event.step}"
    lines = [RULE, title, RULE, "📝 PROMPT:", show(event.prompt, limit), "",
             f"✅ GOLDEN ({event.golden_tokens} tokens):", show(event.golden, limit), ""]  # fmt: skip
    if event.is_full and event.model_output is not None:
        lines += [f"🤖 MODEL ({event.output_tokens} tokens):", show(event.model_output, limit),
                  "✅ MATCH" if event.match else "❌ NO MATCH"]  # fmt: skip
    elif event.eval_error is not None:
        lines.append(f"🤖 MODEL: [Full eval failed - {show(event.eval_error, limit)}]")
    else:
        lines.append("🤖 MODEL: [Skipped - fast log only]")
    lines.append(f"📉 LOSS ON THIS EXAMPLE: {fmt_loss(event.loss)}")
    if event.is_full:
        lines.append(
            f"📊 Loss Comparison: Train={fmt_loss(event.train_loss_mean)} | Val={fmt_loss(event.val_loss)}"
            f" | Gap={fmt_gap(event.gap)} {gap_mark(event.gap_ok)}".rstrip()
        )
        if event.probe_accuracy is not None:
            matched = sum(p.match for p in event.probes)
            token_accuracy = "-" if event.probe_token_accuracy is None else f"{event.probe_token_accuracy:.2f}"
            lines.append(
                f"🎯 HELD-OUT: {matched}/{len(event.probes)} exact ({event.probe_accuracy:.2f})"
                f" | token accuracy {token_accuracy} | eval {event.eval_seconds or 0:.2f} s"
            )
    lines.append(stats_line(event))
    lines.append(RULE)
    return lines


def stats_line(event: StepEvent) -> str:
    parts = [f"📈 batch loss {fmt_loss(event.batch_loss)}"]
    if event.learning_rate is not None:
        parts.append(f"lr {event.learning_rate:.2e}")
    if event.grad_norm is not None:
        parts.append(f"grad norm {event.grad_norm:.3f}")
    if event.tokens_per_s is not None:
        parts.append(f"{event.tokens_per_s:,.0f} tok/s")
    parts.append(f"{event.elapsed_s:.1f} s")
    return " | ".join(parts)


def show(text: str, limit: int) -> str:
    return printable(clip(text, limit))
