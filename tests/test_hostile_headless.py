"""A real headless run on a dataset of hostile text, piped with TERM=dumb: no escape from the data gets out.

The model's tokenizer is byte-level, so every hostile byte survives tokenizing and decoding and reaches
the printout, where it must arrive as a visible placeholder.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support import ESCAPE_BYTES, HOSTILE, headless_command
from twotier.store import LedgerReader

PAYLOADS = [text for name, text in HOSTILE.items() if name != "one megabyte"]


def byte_level_model(folder: Path) -> Path:
    """A tiny Llama with a byte-level BPE tokenizer trained on the payloads, saved to load by path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(PAYLOADS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_headless_printout_of_hostile_data_carries_no_escape_byte(tmp_path):
    rows = [{"prompt": prompt, "answer": answer} for prompt in PAYLOADS for answer in PAYLOADS[:3]]
    data = tmp_path / "hostile.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model": str(byte_level_model(tmp_path / "model")),
                "dataset": str(data),
                "validation_split": 0.2,
                "max_steps": 4,
                "log_steps": 1,
                "eval_steps": 2,
                "batch_size": 4,
                "eval_samples": 4,
                "probe_size": 4,
                "max_length": 256,
                "max_new_tokens": 8,
                "learning_rate": 1e-3,
                "stop_on_nan": False,
                "ledger": str(tmp_path / "ledger.db"),
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    result = subprocess.run(
        headless_command(config),
        capture_output=True,
        cwd=tmp_path,
        env={"TERM": "dumb", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    printed = result.stdout.decode("utf-8")
    assert printed.count("FAST LOG") + printed.count("FULL EVAL") == 4
    assert not ESCAPE_BYTES.search(printed)
    assert "␛" in printed  # the escapes were there, and were shown
    with LedgerReader(tmp_path / "ledger.db") as reader:
        stored = {event.prompt for event in reader.iter_events(reader.run("latest").id)}
    assert stored & set(PAYLOADS), "the ledger keeps the hostile prompts whole"
