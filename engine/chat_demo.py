"""A small chat model built the way real ones look, and a conversational task it can learn.

A byte-level BPE tokenizer with ChatML special tokens and Qwen2-Instruct's own chat template, and a
small random Qwen2, saved to a folder and loaded back by path: what twotier's chat paths (TRL, LoRA,
`messages` data) are tested and demonstrated on, since nothing can be downloaded here.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

from .demo import save_random_model, write_splits

# Qwen2-Instruct's chat template, verbatim: a default system prompt when none is given.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SYSTEM_PROMPTS = ("You are a careful assistant. Answer with the word only.", "Reply tersely.")
TRAIN_CONVERSATIONS = 4000
VALIDATION_CONVERSATIONS = 256


def chat_rows(count: int, seed: int, exclude: set[str] | None = None) -> list[dict[str, list[dict[str, str]]]]:
    """`count` conversations asking for a word spelled backwards, deterministic by seed.

    About a third carry a system prompt and a quarter an earlier exchange, so the prompt of the last
    assistant turn is more than one user message, as in real chat data.
    """
    rng = random.Random(seed)
    seen = set(exclude or ())
    rows: list[dict[str, list[dict[str, str]]]] = []
    while len(rows) < count:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6)))
        if word in seen:
            continue
        seen.add(word)
        messages = []
        if rng.random() < 0.33:
            messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        if rng.random() < 0.25:
            earlier = "".join(rng.choice(string.ascii_lowercase) for _ in range(3))
            messages += [
                {"role": "user", "content": f"Spell backwards: {earlier}"},
                {"role": "assistant", "content": earlier[::-1]},
            ]
        messages += [
            {"role": "user", "content": f"Spell backwards: {word}"},
            {"role": "assistant", "content": word[::-1]},
        ]
        rows.append({"messages": messages})
    return rows


def write_chat_dataset(folder: Path, seed: int) -> tuple[Path, Path]:
    """Write train.jsonl and validation.jsonl of `messages` rows (validation words unseen in training)."""
    train = chat_rows(TRAIN_CONVERSATIONS, seed)
    trained = {row["messages"][-1]["content"][::-1] for row in train}
    validation = chat_rows(VALIDATION_CONVERSATIONS, seed + 1, exclude=trained)
    return write_splits(folder, train, validation)


def write_chat_model(folder: Path, seed: int, *, hidden: int = 128, layers: int = 3, vocab_size: int = 320) -> Path:
    """Train a byte-level BPE tokenizer with ChatML tokens, build a small random Qwen2, save both to `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    # A vocabulary a little above the 256 bytes: a few merges, so words still split into small pieces.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [message["content"] for row in chat_rows(500, seed) for message in row["messages"]]
    core.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHATML_TEMPLATE,
    )
    return save_random_model(
        folder,
        tokenizer,
        "qwen2",
        seed,
        hidden=hidden,
        layers=layers,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
