"""Loading the model and tokenizer by hub id or local path; the demo is first saved, then loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..store.errors import first_line
from .config import DEMO, DEMO_CHAT, Config
from .demo import write_demo_model
from .errors import DataError


def resolve_model_path(config: Config, workdir: Path) -> str:
    """The id or folder to load: the demo model is written under `workdir` first."""
    if config.model == DEMO:
        return str(write_demo_model(workdir / "demo-model", config.seed))
    if config.model == DEMO_CHAT:
        from .chat_demo import write_chat_model

        return str(write_chat_model(workdir / "demo-chat-model", config.seed))
    return config.model


def load_model(name_or_path: str, *, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """`AutoModelForCausalLM` and `AutoTokenizer` from a hub id or a folder; remote code only when asked."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise DataError(f"model: cannot load '{name_or_path}': {first_line(err)}") from err
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise DataError(f"model: the tokenizer of '{name_or_path}' has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
