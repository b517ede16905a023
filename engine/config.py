"""The run's settings: defaults < config.json < command-line flags, checked before any work starts."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .matching import DEFAULT_MATCH, parse_match_rule

DEMO = "demo"
DEMO_CHAT = "demo-chat"  # the built-in chat model and `messages` data (engine/chat_demo.py)
# The row formats `data_format` may name; left unset, the format is told from the columns.
FORMATS = ("prompt_answer", "prompt_completion", "messages", "text", "tokenized")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# The `peft` section: a LoRA adapter that PEFT builds on the model (its LoraConfig names in brackets).
PEFT_KEYS = {"r": "rank (r)", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}


def _setting(default: Any, help_text: str) -> Any:
    """A config field with its help text, from which `twotier-tui --help` and the README's table are made."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class Config:
    """Every setting of a run. `config.json` and the flags use these names (flags with dashes)."""

    model: str = _setting(
        DEMO,
        "a hub id or a local folder (AutoModelForCausalLM / AutoTokenizer), 'demo', or 'demo-chat' (a small Qwen2 "
        "with a byte-level BPE tokenizer and the real Qwen2-Instruct chat template)",
    )
    dataset: str = _setting(
        DEMO,
        "a .jsonl, .json, .csv or .parquet file, a hub dataset name, 'demo', or 'demo-chat' (conversations in "
        "messages rows)",
    )
    validation: str | None = _setting(
        None, "a validation file; when null, validation_split of the dataset is held out (seeded)"
    )
    validation_split: float = _setting(0.1, "fraction of the dataset held out when there is no validation file")
    prompt_field: str = _setting("prompt", "the dataset's column holding the prompt (prompt/answer rows)")
    answer_field: str = _setting("answer", "the dataset's column holding the answer (prompt/answer rows)")
    data_format: str | None = _setting(
        None,
        "prompt_answer, prompt_completion, messages, text or tokenized; null tells it from the columns",
    )
    chat_template: bool | str = _setting(
        False,
        "true: the tokenizer's chat template; a .jinja file or a template string: that one (messages rows "
        "always use a template)",
    )
    trust_remote_code: bool = _setting(False, "passed to the Auto classes; off unless you turn it on")
    dtype: str | None = _setting(None, "the weights' dtype when loading: auto, float32, bfloat16, float16")
    attn_implementation: str | None = _setting(
        None, "the attention kernel when loading: eager, sdpa, flash_attention_2...; null: the library's choice"
    )
    peft: dict[str, Any] | None = _setting(
        None,
        'a LoRA adapter built by PEFT: {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", '
        '"v_proj"]} (target_modules may be "all-linear"); needs twotier[trl]',
    )
    max_length: int = _setting(256, "tokens per example; longer answers are cut (a warning gives the count)")
    streaming: bool = _setting(False, "stream the dataset instead of preparing it up front (validation: its head)")
    cache_dir: str | None = _setting(None, "where the tokenized data is cached; null: datasets' cache")
    max_new_tokens: int = _setting(32, "generation budget for the example and the probes at a full eval")
    log_steps: int = _setting(10, "fast log every N optimizer steps; 0 turns fast logs off")
    eval_steps: int = _setting(
        200,
        "full eval every N steps and at the last step; 0 turns full evals off (the last one too); "
        "a step due both gets only the full eval",
    )
    eval_samples: int = _setting(64, "validation examples scored (no grad, batched) for the validation loss")
    probe_size: int = _setting(16, "probe examples answered at each full eval (the first of the scored ones)")
    probes: str | None = _setting(
        None,
        "a .jsonl (or .json, .csv, .parquet) file of your own probe prompts, asked at each full eval after the "
        "probe set: prompt/answer, prompt/completion or messages rows, the golden optional (none: only answered)",
    )
    match: str = _setting(
        DEFAULT_MATCH,
        "what counts as a MATCH: exact, normalized, prefix, contains, regex:PATTERN, numeric[:TOL] or "
        "module:function (see 'What counts as a MATCH')",
    )
    gap_threshold: float = _setting(0.25, "the train/val gap above which a full eval is marked ⚠️")
    stop_on_nan: bool = _setting(True, "fail the run when the training loss becomes NaN or infinite")
    max_steps: int = _setting(600, "optimizer steps to train")
    batch_size: int = _setting(8, "examples per device per step")
    learning_rate: float = _setting(5e-5, "peak learning rate")
    seed: int = _setting(0, "random seed: data order, validation split, model initialisation")
    ledger: str = _setting("runs/ledger.db", "the ledger file; one file holds many runs")
    output_dir: str = _setting("runs/checkpoints", "checkpoints go to output_dir/<run id>/")
    run_name: str | None = _setting(None, "the run's name in the ledger (null: the model's name and the start time)")
    gpus: int = _setting(
        1, "under `twotier daemon`: GPUs the run gets (more than 1: torchrun, one process each); ignored elsewhere"
    )
    training_args: dict[str, Any] = _setting(
        {},
        "passed to transformers.TrainingArguments as is (bf16, gradient accumulation, scheduler, save_steps...) "
        "and validated by the library; as a flag, a JSON object",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_sources(self) -> None:
        """Refuse, before anything loads, a dataset, validation file or model folder that does not exist (what a
        run would refuse at its start): `twotier submit` queues nothing a run would reject at once."""
        from .sources import check_sources

        check_sources(self)

    def tier_warnings(self) -> list[str]:
        """Settings that are legal but probably not what the user meant."""
        if self.log_steps and self.eval_steps and self.eval_steps % self.log_steps:
            return [
                f"eval_steps={self.eval_steps} is not a multiple of log_steps={self.log_steps}: "
                f"full evals run every {self.eval_steps} steps and fast logs every {self.log_steps}, "
                f"so they do not line up (a step due both gets only the full eval)"
            ]
        return []


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)
_NON_NEGATIVE = ("log_steps", "eval_steps", "probe_size", "seed", "gap_threshold")
_POSITIVE = ("max_length", "max_new_tokens", "eval_samples", "max_steps", "batch_size", "learning_rate", "gpus")


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (if given), apply `overrides` (flags; None means not given) and validate."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_json(Path(path)))
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    source = str(path) if path is not None else "flags"
    for key, value in values.items():
        _check_key(key, source)
        values[key] = _check_type(key, value, source)
    config = Config(**values)
    _check_ranges(config, source)
    return config


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a JSON object of settings, got {type(data).__name__}")
    return data


def _check_key(key: str, source: str) -> None:
    if key in FIELDS:
        return
    close = difflib.get_close_matches(key, FIELDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(FIELDS)}"
    shown = key if key.isprintable() else json.dumps(key)
    raise ConfigError(f"{source}: unknown key '{shown}'{hint}")


def _check_type(key: str, value: Any, source: str) -> Any:
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for kind in allowed:
        kind = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{source}: '{key}' must be a finite number, got {value}")
            return float(value)
        if kind in (str, dict) and isinstance(value, kind):
            return value
    wanted = " or ".join(_type_name(kind) for kind in allowed)
    raise ConfigError(f"{source}: '{key}' must be {wanted}, got {json.dumps(value)[:60]}")


def _type_name(kind: Any) -> str:
    kind = typing.get_origin(kind) or kind
    names = {
        bool: "true/false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        dict: "an object",
        type(None): "null",
    }
    return names.get(kind, str(kind))


def _check_ranges(config: Config, source: str) -> None:
    for key in _NON_NEGATIVE:
        if getattr(config, key) < 0:
            raise ConfigError(f"{source}: '{key}' must be 0 or more, got {getattr(config, key)}")
    for key in _POSITIVE:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{source}: '{key}' must be greater than 0, got {getattr(config, key)}")
    if not 0 < config.validation_split < 1:
        raise ConfigError(f"{source}: 'validation_split' must be between 0 and 1, got {config.validation_split}")
    if config.probe_size > config.eval_samples:
        raise ConfigError(
            f"{source}: 'probe_size' ({config.probe_size}) must not exceed 'eval_samples' ({config.eval_samples}):"
            " the probe set is part of the validation examples scored at each full eval"
        )
    if config.dtype is not None and config.dtype not in DTYPES:
        raise ConfigError(f"{source}: 'dtype' must be one of {', '.join(DTYPES)}, got '{config.dtype}'")
    if config.peft is not None:
        _check_peft(config.peft, source)
    parse_match_rule(config.match, source)
    if config.data_format is not None and config.data_format not in FORMATS:
        raise ConfigError(f"{source}: 'data_format' must be one of {', '.join(FORMATS)}, got '{config.data_format}'")
    for key in ("model", "dataset", "prompt_field", "answer_field", "ledger", "output_dir"):
        if not getattr(config, key).strip():
            raise ConfigError(f"{source}: '{key}' must not be empty")


def _check_peft(section: dict[str, Any], source: str) -> None:
    """The `peft` section: known keys only, each of the type PEFT's LoraConfig takes."""
    for key, value in section.items():
        if key not in PEFT_KEYS:
            close = difflib.get_close_matches(key, PEFT_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(PEFT_KEYS)}"
            raise ConfigError(f"{source}: 'peft' has an unknown key '{key}'{hint}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "r" and not (number and value == int(value) and value > 0):
            raise ConfigError(f"{source}: 'peft': 'r' must be a whole number above 0, got {json.dumps(value)}")
        if key == "alpha" and not (number and value > 0):
            raise ConfigError(f"{source}: 'peft': 'alpha' must be a number above 0, got {json.dumps(value)}")
        if key == "dropout" and not (number and 0 <= value < 1):
            raise ConfigError(f"{source}: 'peft': 'dropout' must be a number from 0 up to 1, got {json.dumps(value)}")
        names = isinstance(value, list) and value and all(isinstance(name, str) for name in value)
        if key == "target_modules" and not (isinstance(value, str) or names):
            raise ConfigError(
                f"{source}: 'peft': 'target_modules' must be a list of module names or \"all-linear\", got {json.dumps(value)}"
            )
