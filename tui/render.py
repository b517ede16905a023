"""How twotier shows things, written once: numbers, times, an event's block, a full eval's row and detail.

Every face calls this module: the headless printout and the ledger commands take the plain text of
what it returns, the app's widgets the styled `rich.text.Text`. It never imports Textual or torch.
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from ..engine.matching import answer_changes
from ..store.records import ProbeResult, StepEvent
from .text import clip, printable

TEXT_LIMIT = 400
PROMPT_CELL = 60  # a prompt on one line of a table (probe rows)
HEADLESS_RULE = "=" * 80
DIFF_STYLE = "bold reverse"
TITLE_STYLE = {True: "bold magenta", False: "bold cyan"}  # full eval, fast log
MATCH_STYLE = {True: "bold green", False: "bold red"}


def fmt_loss(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def fmt_gap(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.4f}"


def gap_mark(ok: bool | None) -> str:
    """✅ within the run's gap_threshold, ⚠️ above it."""
    return "" if ok is None else ("✅" if ok else "⚠️")


def fmt_fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_duration(seconds: float | None) -> str:
    """H:MM:SS, the one way a duration, an elapsed time or an ETA is shown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def fmt_elapsed(total: float | None, loading: float | None = None) -> str:
    """A run's elapsed time, saying what it includes: the loading before its first step, when there was any."""
    if loading is None or loading < 1:
        return f"elapsed {fmt_duration(total)}"
    return f"elapsed {fmt_duration(total)} (loading {fmt_duration(loading)} of it)"


def fmt_phase(phase: dict[str, Any], now: float) -> str:
    """What a run does before training, as a line: `tokenizing 1,200,000 rows · 45% · 0:31 left`."""
    name, done, total = str(phase.get("name", "loading")), int(phase.get("done") or 0), phase.get("total")
    spent = max(0.0, now - float(phase.get("since") or now))
    if not total:
        counted = f" · {done:,} rows" if done else ""
        return f"{name}{counted} · {fmt_duration(spent)} so far"
    share = min(1.0, done / total)
    left = spent / share * (1 - share) if share > 0 else None
    ahead = f"{fmt_duration(left)} left" if left is not None else "starting"
    return f"{name} {int(total):,} rows · {share:.0%} · {ahead}"


def fmt_clock(timestamp: float) -> str:
    """A wall-clock time in the local zone, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def fmt_steps(step: int, total: int | None) -> str:
    """Steps done out of the run's total, when it has one."""
    return f"{step}/{total}" if total else str(step)


def fmt_tokens_per_s(value: float | None) -> str:
    return "-- tok/s" if value is None else f"{value:,.0f} tok/s"


def fmt_match(match: bool | None) -> str:
    return "-" if match is None else ("✅" if match else "❌")


def verdict(match: bool | None, rule: str | None = None) -> str:
    """✅ MATCH or ❌ NO MATCH, with the rule that decided it: `✅ MATCH (prefix)`."""
    said = "✅ MATCH" if match else "❌ NO MATCH"
    return f"{said} ({rule})" if rule else said


def fmt_score(value: float | None) -> str:
    """The graded score (chrF, 0 to 1) beside a verdict."""
    return "-" if value is None else f"{value:.2f}"


def show(text: str, limit: int | None = TEXT_LIMIT) -> str:
    """Data text made safe for a terminal, cut at `limit` for display only (the ledger keeps it whole)."""
    return printable(text if limit is None else clip(text, limit))


def show_prompt(text: str, limit: int | None = TEXT_LIMIT) -> str:
    """A prompt made safe, and when long cut from the left: a templated prompt (system prompt, earlier turns,
    the last user turn, the generation opener) keeps its end, where the question is, never only its start.
    The cut falls at a line start when one is near, so the kept part begins with the last turns whole."""
    if limit is None or len(text) <= limit:
        return printable(text)
    tail = text[-limit:]
    newline = tail.find("\n")
    if 0 <= newline < limit // 2:
        tail = tail[newline + 1 :]
    return "..." + printable(tail)


def fmt_metric(value: float) -> str:
    """A number the trainer logged: whole numbers as such (num_tokens), others to four significant digits."""
    if math.isfinite(value) and value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def metrics_line(metrics: dict[str, float]) -> str:
    """What else the trainer logged at the step, by key; its own `loss` (a mean since its last log) is left to
    the ledger: the block already shows the step's loss."""
    return " | ".join(f"{key} {fmt_metric(value)}" for key, value in sorted(metrics.items()) if key != "loss")


def event_block(event: StepEvent, *, limit: int | None = TEXT_LIMIT, rule: str = HEADLESS_RULE) -> Text:
    """One fast log or full eval as a block of lines; data text is printable and cut at `limit`."""
    text = Text()

    def line(content: str = "", style: str = "") -> None:
        text.append(content + "\n", style=style)

    kind = "🔍 FULL EVAL" if event.is_full else "📍 FAST LOG"
    line(rule, "dim")
    line(f"{kind} - Step {event.step}", TITLE_STYLE[event.is_full])
    line(rule, "dim")
    line("📝 PROMPT:")
    line(show_prompt(event.prompt, limit))
    line()
    line(f"✅ GOLDEN ({event.golden_tokens} tokens):")
    line(show(event.golden, limit))
    line()
    if event.is_full and event.model_output is not None:
        line(f"🤖 MODEL ({event.output_tokens} tokens):")
        line(show(event.model_output, limit))
        line(
            f"{verdict(event.match, event.match_rule)} · chrF {fmt_score(event.score)}", MATCH_STYLE[bool(event.match)]
        )
    elif event.eval_error is not None:
        line(f"🤖 MODEL: [Full eval failed - {show(event.eval_error, limit)}]")
    else:
        line("🤖 MODEL: [Skipped - fast log only]")
    line(f"📉 LOSS ON THIS EXAMPLE: {fmt_loss(event.loss)}")
    if event.is_full:
        line(
            f"📊 Loss Comparison: Train={fmt_loss(event.train_loss_mean)} | Val={fmt_loss(event.val_loss)}"
            f" | Gap={fmt_gap(event.gap)} {gap_mark(event.gap_ok)}".rstrip()
        )
        if event.probes or event.probe_accuracy is not None:
            line(
                f"🎯 PROBES: {probe_count(event.probes)} ({fmt_fraction(event.probe_accuracy)}) | chrF "
                f"{fmt_score(event.probe_score)} | token accuracy {fmt_fraction(event.probe_token_accuracy)}"
                f" | eval {fmt_seconds(event.eval_seconds)} s"
            )
    line(stats_line(event))
    if metrics_line(event.metrics):
        line(f"🧾 logged: {metrics_line(event.metrics)}", "dim")
    text.append(rule, style="dim")
    return text


def event_line(event: StepEvent, width: int) -> Text:
    """One event in a line or two, for a small terminal or a burst of events: the step, the prompt's end,
    the golden, the verdict and the losses that matter; data text on one line, cut to fit `width`."""
    kind = "🔍" if event.is_full else "📍"
    tail = f"  loss {fmt_loss(event.loss)}"
    if event.is_full and event.model_output is not None:
        tail = f"  {fmt_match(event.match)} {one_line(event.model_output, 12)}{tail}"
    room = max(8, width - len(tail) - len(str(event.step)) - 9)
    golden = one_line(event.golden, max(4, room // 3))
    prompt = one_line(event.prompt, max(4, room - len(golden)), from_left=True)
    text = Text(f"{kind} {event.step}  ", style=TITLE_STYLE[event.is_full])
    text.append(prompt)
    text.append(" → ", style="dim")
    text.append(golden, style="bold")
    text.append(tail)
    if event.is_full:
        text.append(f"\n   val {fmt_loss(event.val_loss)} · gap {fmt_gap(event.gap)} {gap_mark(event.gap_ok)}"
                    f" · probes {fmt_fraction(event.probe_accuracy)}", style="dim")  # fmt: skip
    return text


def one_line(text: str, limit: int, *, from_left: bool = False) -> str:
    """Data text on one line, at most `limit` characters: cut at its end, or (`from_left`) at its start, which
    keeps the end of a long templated prompt, where the question is."""
    flat = printable(text).replace("\n", "⏎")
    if len(flat) <= limit:
        return flat
    return "…" + flat[-(limit - 1) :] if from_left else flat[: limit - 1] + "…"


def stats_line(event: StepEvent) -> str:
    parts = [f"📈 batch loss {fmt_loss(event.batch_loss)}"]
    if event.learning_rate is not None:
        parts.append(f"lr {event.learning_rate:.2e}")
    if event.grad_norm is not None:
        parts.append(f"grad norm {event.grad_norm:.3f}")
    if event.tokens_per_s is not None:
        parts.append(fmt_tokens_per_s(event.tokens_per_s))
    parts.append(f"{event.elapsed_s:.1f} s")
    return " | ".join(parts)


@dataclass(frozen=True)
class EvalColumn:
    """One column of a full-eval table, in the app and in `twotier ledger show` alike."""

    key: str
    header: str
    text: Callable[[StepEvent], str]
    value: Callable[[StepEvent], Any]  # what the app sorts by


EVAL_COLUMNS = (
    EvalColumn("step", "step", lambda e: str(e.step), lambda e: e.step),
    EvalColumn("train", "train loss", lambda e: fmt_loss(e.train_loss_mean), lambda e: e.train_loss_mean),
    EvalColumn("val", "val loss", lambda e: fmt_loss(e.val_loss), lambda e: e.val_loss),
    EvalColumn("gap", "gap", lambda e: f"{fmt_gap(e.gap)} {gap_mark(e.gap_ok)}".rstrip(), lambda e: e.gap),
    EvalColumn("match", "MATCH", lambda e: fmt_match(e.match), lambda e: e.match),
    EvalColumn("probes", "probe acc", lambda e: fmt_fraction(e.probe_accuracy), lambda e: e.probe_accuracy),
    EvalColumn("chrf", "probe chrF", lambda e: fmt_score(e.probe_score), lambda e: e.probe_score),
    EvalColumn("seconds", "eval s", lambda e: fmt_seconds(e.eval_seconds), lambda e: e.eval_seconds),
)


def diff_texts(golden: str, output: str) -> tuple[Text, Text]:
    """Golden and output with the characters that differ shown in reverse video (visible without colour)."""
    golden_text, output_text = Text(), Text()
    matcher = difflib.SequenceMatcher(None, golden, output, autojunk=False)
    for tag, g0, g1, o0, o1 in matcher.get_opcodes():
        style = "" if tag == "equal" else DIFF_STYLE
        golden_text.append(printable(golden[g0:g1]), style=style)
        output_text.append(printable(output[o0:o1]), style=style)
    return golden_text, output_text


def eval_detail(event: StepEvent, previous_step: int | None) -> Text:
    """A full eval in full: texts whole, output against golden with differences marked, and the probe set's
    count (each probe's line is `probe_line`, with its flip since `previous_step`)."""
    golden, output = diff_texts(event.golden, event.model_output or "")
    text = Text(f"🔍 FULL EVAL - Step {event.step}  ", style=TITLE_STYLE[True])
    text.append(f"{verdict(event.match, event.match_rule)} · chrF {fmt_score(event.score)}",
                style=MATCH_STYLE[bool(event.match)])  # fmt: skip
    text.append("\n\n📝 PROMPT\n", style="bold")
    text.append(show(event.prompt, None))
    text.append(f"\n\n✅ GOLDEN ({event.golden_tokens} tokens)\n", style="bold")
    text.append_text(golden)
    text.append(f"\n\n🤖 MODEL ({event.output_tokens} tokens)\n", style="bold")
    text.append_text(output)
    text.append("\n(differences in reverse video)\n\n", style="dim")
    text.append(f"📉 loss on this example {fmt_loss(event.loss)}\n")
    text.append(
        f"📊 train {fmt_loss(event.train_loss_mean)} | val {fmt_loss(event.val_loss)}"
        f" | gap {fmt_gap(event.gap)} {gap_mark(event.gap_ok)}\n"
    )
    text.append("\n")
    text.append_text(probe_set_header(event.probes, previous_step))
    return text


def flip_mark(probe: ProbeResult, before: dict[int, ProbeResult]) -> str:
    """How this probe's MATCH changed since the previous eval: ↑ newly right, ↓ newly wrong."""
    previous = before.get(probe.probe_id)
    if previous is None or previous.match == probe.match:
        return "  "
    return "↑ " if probe.match else "↓ "


def probe_count(probes: tuple[ProbeResult, ...]) -> str:
    """`3/8 MATCH`, counting the probes that have a golden; `+ 2 answered` for those that have none."""
    judged = [probe for probe in probes if probe.match is not None]
    said = f"{sum(bool(probe.match) for probe in judged)}/{len(judged)} MATCH"
    return said + (f" + {len(probes) - len(judged)} answered" if len(judged) < len(probes) else "")


def probe_set_header(probes: tuple[ProbeResult, ...], previous_step: int | None) -> Text:
    since = f"since step {previous_step}" if previous_step is not None else "(first eval: nothing to compare)"
    return Text(f"🎯 PROBE SET: {probe_count(probes)} · ↑/↓ flipped {since}", style="bold")


def probe_line(probe: ProbeResult, flip: str = "  ") -> Text:
    """One probe's answer at one eval: flip mark, verdict and score, prompt, answer, and the golden it missed."""
    text = Text(flip, style="bold yellow" if flip.strip() else "")
    text.append(("💬" if probe.match is None else fmt_match(probe.match)) + " ")
    text.append(f"#{probe.probe_id:<3} ", style="dim")
    if probe.score is not None:
        text.append(f"{fmt_score(probe.score)} ", style="dim")
    text.append(one_line(probe.prompt, PROMPT_CELL, from_left=True))
    text.append(" → ", style="dim")
    text.append(printable(probe.model_output))
    if probe.match is False and probe.golden is not None:
        text.append("  (golden ", style="dim")
        text.append(printable(probe.golden))
        text.append(")", style="dim")
    return text


def answer_history(answers: list[tuple[int, ProbeResult]], *, marks: tuple[str, str] | None = None) -> Text:
    """A probe's answers eval after eval, each with the words that changed since the one before in reverse
    video, or (for plain text, `marks`) between the two marks, e.g. «changed»."""
    text = Text()
    previous: str | None = None
    for step, answer in answers:
        text.append(f"step {step:>6}  ", style="bold")
        text.append(("💬" if answer.match is None else fmt_match(answer.match)) + " ")
        text.append(f"{fmt_score(answer.score):>4}  ", style="dim")
        for segment, changed in answer_changes(previous, answer.model_output) if previous is not None else [
            (answer.model_output, False)
        ]:  # fmt: skip
            if changed and marks is not None:
                segment = marks[0] + segment + marks[1]
            text.append(printable(segment), style=DIFF_STYLE if changed and marks is None else "")
        text.append("\n")
        previous = answer.model_output
    return text
