"""Loading the model and tokenizer by hub id or local path (the demos are first saved, then loaded), with the
loading options a config names, and the LoRA adapter of its `peft` section built by PEFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..store.errors import first_line
from .config import DEMO, DEMO_CHAT, Config
from .demo import write_demo_model
from .errors import DataError


def resolve_model_path(config: Config, workdir: Path, *, write: bool = True) -> str:
    """The id or folder to load: the demo model is written under `workdir` first, unless `write` is False (the
    other processes of a node, which read what the node's main process wrote)."""
    if config.model == DEMO:
        folder = workdir / "demo-model"
        return str(write_demo_model(folder, config.seed) if write else folder)
    if config.model == DEMO_CHAT:
        from .chat_demo import write_chat_model

        folder = workdir / "demo-chat-model"
        return str(write_chat_model(folder, config.seed) if write else folder)
    return config.model


def load_model(
    name_or_path: str,
    *,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    attn_implementation: str | None = None,
    progress_bars: bool = False,
) -> tuple[Any, Any]:
    """`AutoModelForCausalLM` and `AutoTokenizer` from a hub id or a folder; remote code only when asked.
    `dtype` and `attn_implementation` go to `from_pretrained` as they are; `progress_bars` lets transformers draw
    its loading bar (headless)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    options: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        options["dtype"] = dtype
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    # The loading bar only: checkpoints written later draw no bar of their own.
    (hf_logging.enable_progress_bar if progress_bars else hf_logging.disable_progress_bar)()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **options)
    except (OSError, ValueError, ImportError) as err:
        raise DataError(f"model: cannot load '{name_or_path}': {first_line(err)}") from err
    finally:
        hf_logging.disable_progress_bar()
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise DataError(f"model: the tokenizer of '{name_or_path}' has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def with_lora(model: Any, section: dict[str, Any]) -> Any:
    """The model wrapped by PEFT with the LoRA adapter the config's `peft` section describes."""
    try:
        import peft
    except ImportError as err:
        raise DataError("peft: the 'peft' section needs the peft package: pip install 'twotier[trl]'") from err
    settings = {"r": section.get("r", 8), "lora_alpha": section.get("alpha", 2 * section.get("r", 8))}
    settings["lora_dropout"] = section.get("dropout", 0.0)
    if "target_modules" in section:
        settings["target_modules"] = section["target_modules"]
    try:
        return peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", **settings))
    except (ValueError, TypeError) as err:
        raise DataError(f"peft: cannot add a LoRA adapter to this model: {first_line(err)}") from err
