"""Chat templates in training data: which template applies, and where an answer's content sits in its turn.

The prompt is exactly what the template renders with the generation prompt; the golden is what the full
conversation adds after it. One answer rendered as a sentinel finds the text the template wraps around
the content (ChatML's `<|im_end|>\n` after it), so what is shown as the golden is the content alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError

SENTINEL = "TWOTIERANSWERSENTINEL"
PROBE = [{"role": "user", "content": "TWOTIERQUESTIONSENTINEL"}]
Message = dict[str, Any]


@dataclass(frozen=True)
class Wrapper:
    """The text around an answer's content in its templated turn: golden = prefix + content + suffix.

    `opener` is what the generation prompt adds to a conversation (ChatML's `<|im_start|>assistant\n`): where
    an answer starts in a row whose loss covers the whole conversation. `continues` is False for a template
    whose full conversation does not start with its generation prompt; such rows fall back to the golden
    being the content and the EOS token.
    """

    prefix: str = ""
    suffix: str = ""
    continues: bool = True
    opener: str = ""


def resolve_template(setting: bool | str, tokenizer: Any, model: str, *, needed: bool) -> str | None:
    """The template to use: a string setting is a .jinja file or the template itself; true (or `needed`, for
    conversational data) means the tokenizer's own. None when no template applies."""
    if isinstance(setting, str):
        path = Path(setting).expanduser()
        if setting.endswith(".jinja") or ("{" not in setting and path.suffix):
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise DataError(f"chat_template: cannot read the template file '{setting}': {err}") from err
        if "{{" not in setting and "{%" not in setting:
            raise DataError(f"chat_template: '{setting[:60]}' is neither a .jinja file nor a Jinja template")
        return setting
    if not setting and not needed:
        return None
    own = getattr(tokenizer, "chat_template", None)
    if not own:
        if setting:
            raise DataError(f"model: 'chat_template' is on but the tokenizer of '{model}' has none")
        raise DataError(
            f"model: conversational data needs a chat template and the tokenizer of '{model}' has none;"
            " set 'chat_template' to a template or a .jinja file"
        )
    try:
        return tokenizer.get_chat_template()
    except ValueError as err:
        raise DataError(f"model: {str(err).splitlines()[0]}") from err


def own_template(tokenizer: Any) -> str | None:
    """The tokenizer's own chat template, or None when it has none."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        return tokenizer.get_chat_template()
    except ValueError:  # several named templates and no default
        return None


def render(tokenizer: Any, template: str, conversations: list[list[Message]], *, generation: bool) -> list[str]:
    """The template's text for each conversation, as `apply_chat_template(tokenize=False)` renders it."""
    return tokenizer.apply_chat_template(
        conversations, chat_template=template, add_generation_prompt=generation, tokenize=False
    )


def probe_wrapper(tokenizer: Any, template: str) -> Wrapper:
    """Render one exchange with a sentinel answer to find the text around the answer's content."""
    try:
        (prompt,) = render(tokenizer, template, [PROBE], generation=True)
        (bare,) = render(tokenizer, template, [PROBE], generation=False)
        (full,) = render(tokenizer, template, [[*PROBE, {"role": "assistant", "content": SENTINEL}]], generation=False)
    except Exception:  # noqa: BLE001 - a template that refuses the probe still serves rows, found per row
        return Wrapper()
    opener = prompt[len(bare) :] if prompt.startswith(bare) else ""
    if not full.startswith(prompt) or SENTINEL not in full[len(prompt) :]:
        return Wrapper(continues=False, opener=opener)
    golden = full[len(prompt) :]
    at = golden.index(SENTINEL)
    return Wrapper(golden[:at], golden[at + len(SENTINEL) :], opener=opener)


@dataclass(frozen=True)
class Turns:
    """A batch of conversations split for training: the templated prompt, the golden text and where its content is."""

    prompts: list[str]
    goldens: list[str]
    spans: list[tuple[int, int]]  # the content's characters inside each golden
    continues: list[bool]  # False: the golden is the bare content; the EOS token must follow it


def split_turns(
    tokenizer: Any,
    template: str,
    wrapper: Wrapper,
    prompts: list[list[Message]],
    answers: list[str],
    rows: list[int],
    source: str,
) -> Turns:
    """Templated prompt (with the generation prompt) and golden (what the full conversation adds) for each row."""
    fulls = [[*prompt, {"role": "assistant", "content": answer}] for prompt, answer in zip(prompts, answers)]
    try:
        prompt_texts = _render_prompts(tokenizer, template, prompts)
        full_texts = render(tokenizer, template, fulls, generation=False)
    except Exception:  # noqa: BLE001 - find the row the template refuses, then say which
        prompt_texts, full_texts = [], []
        for prompt, full, row in zip(prompts, fulls, rows):
            try:
                prompt_texts += _render_prompts(tokenizer, template, [prompt])
                full_texts += render(tokenizer, template, [full], generation=False)
            except Exception as err:  # noqa: BLE001 - jinja's own errors and the template's raise_exception
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise DataError(f"{source}: row {row}: the chat template refuses this conversation: {reason}") from err
    goldens, spans, continues = [], [], []
    for prompt_text, full_text, answer in zip(prompt_texts, full_texts, answers):
        if not full_text.startswith(prompt_text):
            goldens.append(answer)
            spans.append((0, len(answer)))
            continues.append(False)
            continue
        golden = full_text[len(prompt_text) :]
        goldens.append(golden)
        spans.append(_content_span(golden, answer, wrapper if prompt_text else Wrapper(continues=False)))
        continues.append(True)
    return Turns(prompt_texts, goldens, spans, continues)


def _render_prompts(tokenizer: Any, template: str, prompts: list[list[Message]]) -> list[str]:
    """Generation prompts; a conversation with nothing before its answer has an empty prompt."""
    texts = [""] * len(prompts)
    filled = [index for index, prompt in enumerate(prompts) if prompt]
    if filled:
        for index, text in zip(filled, render(tokenizer, template, [prompts[i] for i in filled], generation=True)):
            texts[index] = text
    return texts


def _content_span(golden: str, answer: str, wrapper: Wrapper) -> tuple[int, int]:
    """Where the answer's content sits in the golden text: inside the wrapper, else where the answer is found."""
    prefix, suffix = wrapper.prefix, wrapper.suffix
    if (
        wrapper.continues
        and golden.startswith(prefix)
        and golden.endswith(suffix)
        and len(golden) >= len(prefix + suffix)
    ):
        return len(prefix), len(golden) - len(suffix)
    stripped = answer.strip()
    at = golden.rfind(stripped) if stripped else -1
    return (at, at + len(stripped)) if at >= 0 else (0, len(golden))


def token_span(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """The tokens whose characters overlap [start, end): the content's own tokens."""
    first = next((i for i, (_, stop) in enumerate(offsets) if stop > start), len(offsets))
    last = next((i + 1 for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end), 0)
    return (first, max(first, last)) if end > start else (first, first)


@dataclass(frozen=True)
class Shown:
    """A training row as the fast log shows it: the prompt, the golden's content and their token counts."""

    prompt: str
    golden: str
    prompt_tokens: int
    golden_tokens: int
    prompt_ids: list[int]  # what a generation for this row starts from


class RowReader:
    """Splits a row (input ids and labels) into its prompt and its golden, and finds the golden's content.

    The golden is the row's last trained span; what precedes it is the prompt. When the loss covers the
    whole row (a conversation trained whole, as TRL does by default on `messages`), the answer starts after
    the template's last generation opener (`<|im_start|>assistant\n`), and without a template halfway, so a
    generation always has a prompt to start from.
    """

    def __init__(self, tokenizer: Any, wrapper: Wrapper | None, ignore_index: int = -100) -> None:
        self.tokenizer = tokenizer
        self.ignore_index = ignore_index
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"] if text else []  # noqa: E731
        wrapper = wrapper or Wrapper()
        self.prefix, self.suffix, self.opener = encode(wrapper.prefix), encode(wrapper.suffix), encode(wrapper.opener)
        eos = tokenizer.eos_token_id
        self.tails = [tail for tail in (self.suffix, [eos] if eos is not None else []) if tail]

    def covers_prompt(self, labels: list[int]) -> bool:
        """Whether the loss covers the row from its start: nothing before the trained span is masked."""
        return self._span(labels)[0] <= 1

    def boundary(self, input_ids: list[int], labels: list[int]) -> tuple[int, int]:
        """Where the golden starts and ends in the row (the end is exclusive)."""
        start, end = self._span(labels)
        if start > 1 or end == 0:
            return start, end
        opener, found = self.opener, -1
        if opener:
            found = next(
                (i for i in range(end - len(opener), start - 1, -1) if input_ids[i : i + len(opener)] == opener), -1
            )
        if found >= 0:
            return found + len(opener), end
        return max(1, end // 2), end

    def split(self, input_ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        """Prompt ids (leading padding dropped) and golden ids."""
        start, end = self.boundary(input_ids, labels)
        pad = self.tokenizer.pad_token_id
        lead = next((i for i, token in enumerate(input_ids[:start]) if token != pad), start)
        return list(input_ids[lead:start]), list(input_ids[start:end])

    def content(self, golden_ids: list[int]) -> tuple[int, int]:
        """Where the content sits in golden ids, the template's wrapper tokens (or the EOS) left out."""
        start = len(self.prefix) if self.prefix and golden_ids[: len(self.prefix)] == self.prefix else 0
        end = len(golden_ids)
        tails = list(self.tails)
        # Each tail once, in either order: TRL ends a templated completion with the EOS after the template's own
        # end of turn (`<|im_end|>\n<|im_end|>`).
        while stripped := next(
            (t for t in tails if end - start >= len(t) and golden_ids[end - len(t) : end] == t), None
        ):
            end -= len(stripped)
            tails.remove(stripped)
        return start, end

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def show(self, input_ids: list[int], labels: list[int]) -> Shown:
        prompt, golden = self.split(input_ids, labels)
        start, end = self.content(golden)
        return Shown(self.decode(prompt), self.decode(golden[start:end]), len(prompt), end - start, prompt)

    def _span(self, labels: list[int]) -> tuple[int, int]:
        """The last contiguous run of trained positions; (len, len) when nothing is trained."""
        end = len(labels)
        while end > 0 and labels[end - 1] == self.ignore_index:
            end -= 1
        start = end
        while start > 0 and labels[start - 1] != self.ignore_index:
            start -= 1
        return (start, end) if end else (len(labels), len(labels))
