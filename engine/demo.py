"""The built-in demo: a word-reversal task, a character tokenizer trained on the fly and a tiny Llama.

Nothing can be downloaded on our machines, so the demo writes its dataset as JSONL and saves its
model and tokenizer to a folder; the engine then loads both by path, as it would a real model.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

ALPHABET = string.ascii_lowercase
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
TRAIN_WORDS = 6000
VALIDATION_WORDS = 512


def demo_pairs(count: int, seed: int, exclude: set[str] | None = None) -> list[dict[str, str]]:
    """`count` distinct random words (3 to 6 letters) with their reversal, deterministic by seed."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    pairs: list[dict[str, str]] = []
    while len(pairs) < count:
        word = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 6)))
        if word in seen:
            continue
        seen.add(word)
        pairs.append({"prompt": f"reverse {word}=", "answer": word[::-1]})
    return pairs


def write_demo_dataset(folder: Path, seed: int) -> tuple[Path, Path]:
    """Write train.jsonl and validation.jsonl (words never seen in training) into `folder`."""
    train = demo_pairs(TRAIN_WORDS, seed)
    validation = demo_pairs(VALIDATION_WORDS, seed + 1, exclude={p["answer"][::-1] for p in train})
    return write_splits(folder, train, validation)


def write_splits(folder: Path, train: list[dict[str, Any]], validation: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write the two splits as train.jsonl and validation.jsonl in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "train.jsonl", folder / "validation.jsonl"
    for path, rows in zip(paths, (train, validation)):
        text = "".join(json.dumps(row) + "\n" for row in rows)
        # Rewritten only when changed: the file's modification time is part of the tokenized cache's key.
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return paths


def write_demo_model(folder: Path, seed: int, *, hidden: int = 128, layers: int = 3) -> Path:
    """Train a character tokenizer, build a small random Llama and save both to `folder`."""
    from tokenizers import Tokenizer, decoders, models, processors, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    printable = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    # A vocabulary of exactly the alphabet leaves no room for merges: one token per character.
    trainer = trainers.BpeTrainer(
        vocab_size=len(SPECIAL_TOKENS) + len(printable),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=printable,
        show_progress=False,
    )
    core.train_from_iterator([pair["prompt"] + pair["answer"] for pair in demo_pairs(500, seed)], trainer)
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", core.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    return save_random_model(
        folder,
        tokenizer,
        "llama",
        seed,
        hidden=hidden,
        layers=layers,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )


def save_random_model(
    folder: Path, tokenizer: Any, architecture: str, seed: int, *, hidden: int, layers: int, **shape: Any
) -> Path:
    """Save `tokenizer` and a randomly initialised small model of `architecture` ("llama", "qwen2"...) to `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        architecture,
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **shape,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder
