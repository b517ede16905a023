"""`TwoTier(trainer)`: the one call that joins a user's own `Trainer` or TRL `SFTTrainer` script.

Everything the engine's runner is given by a config, this reads from the trainer: the tokenizer, the validation
examples and probes (from `trainer.eval_dataset`, in any format TRL accepts), the run's name, model, steps, full
settings and LoRA adapter. It opens a run in the ledger when training begins, closes it when training ends, and
marks it failed with the error when training raises. Pause and stop requests for the run (`twotier pause RUN`, the
app) are acted on at a step end through the same `ControlCallback` as the command line's runs.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

from ..store import LedgerWriter, RunInfo, RunStatus, StepEvent, TwoTierError, create_run, open_ledger
from ..store.errors import first_line
from . import distributed
from .cadence import TierSettings
from .chat import RowReader, own_template, probe_wrapper
from .config import Config
from .control import ControlCallback
from .data import Example, examples_from_rows
from .errors import ConfigError
from .evaluate import Evaluator
from .matching import DEFAULT_MATCH, parse_match_rule
from .probes import Probe, load_probes
from .runner import global_batch
from .sources import check_probes_file
from .steering import Steering
from .tiers import TwoTierCallback

log = logging.getLogger("twotier.engine")
# A script that imports this before building its TrainingArguments runs under torchrun on CPUs as one run (gloo).
distributed.cpu_by_default()
SOURCE = "trainer.eval_dataset"
DEFAULT_MAX_LENGTH = 1024


class TwoTier(TwoTierCallback):
    """`trainer.add_callback(TwoTier(trainer, ledger="runs/ledger.db", log_steps=10, eval_steps=200))`.

    Works with `Trainer`, `SFTTrainer` and their subclasses, LoRA (PEFT) models, gradient accumulation and packed
    batches. Each `trainer.train()` is a run of its own. Why `trainer.train` is wrapped: a Trainer calls no
    callback when training raises (`on_train_end` never comes), so the instance's `train` is wrapped to mark
    the run failed, with the error, before the exception goes on; a Ctrl-C marks it stopped. A stop requested
    through the ledger ends training at the next step end with a checkpoint (in `args.output_dir`, whatever
    `save_strategy` says) and marks the run stopped; a pause holds the loop at a step end until it is lifted.
    """

    def __init__(
        self,
        trainer: Any,
        ledger: str | Path = "runs/ledger.db",
        *,
        log_steps: int = 10,
        eval_steps: int = 200,
        eval_samples: int = 64,
        probe_size: int = 16,
        max_new_tokens: int = 32,
        gap_threshold: float = 0.25,
        run_name: str | None = None,
        match: str = DEFAULT_MATCH,
        probes: str | Path | None = None,
    ) -> None:
        """`match`: what counts as a MATCH (a rule as config.json's `match` takes it); `probes`: a file of your
        own probe prompts, asked at each full eval after the probe set (config.json's `probes`)."""
        if not isinstance(trainer, Trainer):
            raise ConfigError(
                f"TwoTier needs a transformers Trainer (Trainer, TRL's SFTTrainer or a subclass), got {type(trainer).__name__}"
            )
        if distributed.trainer_needs_use_cpu() and trainer.args.world_size <= 1:
            raise ConfigError(
                f"TwoTier: {distributed.launched_world_size()} processes were launched on a machine without GPUs, but"
                " the Trainer trains each alone: pass use_cpu=True to TrainingArguments (or import twotier first)"
            )
        tokenizer = _tokenizer(trainer)
        settings = TierSettings(log_steps, eval_steps, gap_threshold)
        if probe_size > eval_samples:
            raise ConfigError(f"probe_size ({probe_size}) must not exceed eval_samples ({eval_samples})")
        rule = parse_match_rule(match, "TwoTier")
        template = own_template(tokenizer)
        reader = RowReader(tokenizer, probe_wrapper(tokenizer, template) if template else None)
        validation, asked_with = held_out(trainer, tokenizer, eval_samples) if eval_steps else ([], None)
        evaluator = None
        if validation:
            batch = max(trainer.args.per_device_eval_batch_size, 16)
            evaluator = Evaluator(
                tokenizer,
                validation,
                eval_samples=eval_samples,
                probe_size=probe_size,
                max_new_tokens=max_new_tokens,
                batch_size=batch,
                reader=reader,
                rule=rule,
                extra_probes=_probes(probes, trainer, tokenizer, asked_with),
            )
        super().__init__(
            run_id="",
            tokenizer=tokenizer,
            publish=self._submit,
            evaluator=evaluator,
            settings=settings,
            loss_tap=getattr(trainer, "loss_tap", None),
            reader=reader,
        )
        self.trainer = trainer
        self.ledger = Path(ledger)
        self.run_name = run_name
        self.options = {
            "log_steps": log_steps,
            "eval_steps": eval_steps,
            "eval_samples": eval_samples,
            "probe_size": probe_size,
            "max_new_tokens": max_new_tokens,
            "gap_threshold": gap_threshold,
            "match": rule.spec,
            "probes": None if probes is None else str(probes),
        }
        if distributed.launched_rank() == 0:  # rank 0 alone writes (the ledger is on its node's disk)
            open_ledger(self.ledger).close()  # a ledger that cannot be opened fails here, before any training
        self._writer: LedgerWriter | None = None
        self.steering = Steering()
        self._control: ControlCallback | None = None
        _wrap_train(trainer, self)

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        # On every rank (collectives): rank 0's run id, and who takes part.
        self.run_id = distributed.broadcast_object(uuid.uuid4().hex[:12])
        self.steering = Steering()  # each train() is a run of its own, asked things of its own
        state_of = getattr(args, "distributed_state", None)
        world = distributed.world_info(state_of.distributed_type.value if state_of is not None else None)
        if world.is_main:
            ledger = open_ledger(self.ledger)
            create_run(ledger, self._run_info(state, world))
            self._writer = LedgerWriter(ledger, self.run_id, on_request=self.steering.request)
        # On every rank: the control callback agrees with the other ranks at each step end (a collective).
        self._control = ControlCallback(self.steering, self._writer, save_at_end=False)
        super().on_train_begin(args, state, control, model, **kwargs)

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        super().on_step_end(args, state, control, model, **kwargs)
        if self._control is not None:  # after the tiers, as in the command line's runs: the step is logged first
            self._control.on_step_end(args, state, control, model=model, **kwargs)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        super().on_train_end(args, state, control, **kwargs)
        stopped = self.steering.stopped
        status = RunStatus.STOPPED if stopped else RunStatus.FINISHED
        self.close(status, done=self.steering.carried_out("stop"), step=state.global_step)

    def close(
        self, status: RunStatus, error: str | None = None, *, done: tuple[int, ...] = (), step: int | None = None
    ) -> None:
        """End the open run (if any) with `status` at `step`, carrying out the control requests `done`:
        everything logged is written first."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._control = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(status, error, done=done, step=step)

    def _submit(self, event: StepEvent) -> None:
        if self._writer is not None:
            self._writer.submit(event)

    def _run_info(self, state: TrainerState, world: distributed.WorldInfo) -> RunInfo:
        trainer, now = self.trainer, time.time()
        model = model_name(trainer.model)
        name = self.run_name or trainer.args.run_name or f"{Path(model).name}-{time.strftime('%Y%m%d-%H%M%S')}"
        config = {
            "trainer": type(trainer).__name__,
            "twotier": self.options,
            "peft": adapter_settings(trainer.model),
            "training_args": trainer.args.to_dict(),
        }
        return RunInfo(
            id=self.run_id,
            name=name,
            status=RunStatus.RUNNING,
            model=model,
            dataset=dataset_name(trainer.train_dataset),
            config=config,
            started_at=now,
            heartbeat_at=now,
            opened_at=now,
            max_steps=state.max_steps or None,
            host=socket.gethostname(),
            pid=os.getpid(),
            trained_from=now,  # the script loaded its model and data before: nothing of that is in this run
            global_batch_size=global_batch(trainer.args),
            **world.record(),
        )


def _wrap_train(trainer: Any, callback: TwoTier) -> None:
    """Make `trainer.train` close the open run when it raises (see `TwoTier`)."""
    original = trainer.train

    @functools.wraps(original)
    def train(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except BaseException as err:
            stopped = isinstance(err, KeyboardInterrupt)
            error = "interrupted (KeyboardInterrupt)" if stopped else f"{type(err).__name__}: {first_line(err)}"
            try:
                callback.close(RunStatus.STOPPED if stopped else RunStatus.FAILED, error)
            except TwoTierError as ledger_error:  # the training error is the one to raise
                log.error("the run could not be marked failed in the ledger: %s", ledger_error)
            raise

    trainer.train = train


def _tokenizer(trainer: Any) -> Any:
    tokenizer = getattr(trainer, "processing_class", None)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a multimodal processor holds its tokenizer
    if tokenizer is None or not callable(getattr(tokenizer, "decode", None)):
        raise ConfigError("TwoTier needs the trainer's tokenizer: pass processing_class=tokenizer to the Trainer")
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ConfigError("TwoTier: the trainer's tokenizer has neither a pad nor an eos token")
    return tokenizer


def held_out(trainer: Any, tokenizer: Any, count: int) -> tuple[list[Example], str | None]:
    """The first `count` validation examples of `trainer.eval_dataset` (the probe set is their head), and the
    chat template they were read with (None: none), so a probe file is asked as the eval data is.

    Raw columns come first, whatever TRL added beside them: `messages` (everything before the last assistant turn
    is the prompt, under the tokenizer's chat template), `prompt`/`completion`, `text`, and only then token ids
    (`input_ids` with `labels` or `completion_mask`). A packed eval dataset keeps only ids: its rows are split
    into their documents at `seq_lengths`, and a document trained whole is split after the template's last
    generation opener (`<|im_start|>assistant\\n`), so its prompt and golden are the conversation's last turn.
    """
    dataset = trainer.eval_dataset
    if isinstance(dataset, dict):  # several named eval sets: the first is the one evaluated
        dataset = next(iter(dataset.values()), None)
    if dataset is None:
        raise ConfigError(
            "TwoTier: full evals need validation examples and the trainer has no eval_dataset;"
            " pass eval_dataset=... to the trainer, or eval_steps=0"
        )
    rows = _documents(_head(dataset, count), count)
    columns = set(rows[0]) if rows else set()
    text_field = getattr(trainer.args, "dataset_text_field", "text")
    if "messages" in columns:
        data_format = "messages"
    elif {"prompt", "completion"} <= columns:
        data_format = "prompt_completion"
    elif text_field in columns:
        data_format = "text"
        rows = [{"text": row[text_field]} for row in rows]
    elif "input_ids" in columns:
        data_format = "tokenized"
    else:
        raise ConfigError(
            f"TwoTier: {SOURCE} has columns {', '.join(sorted(columns)) or 'none'}; it needs 'messages',"
            " 'prompt'/'completion', 'text' or 'input_ids'"
        )
    name = model_name(trainer.model)
    config = Config(model=name, max_length=_max_length(trainer, tokenizer), data_format=data_format, eval_samples=count)
    examples, layout = examples_from_rows(config, tokenizer, rows, SOURCE, None)
    return examples, layout.template


def _probes(path: str | Path | None, trainer: Any, tokenizer: Any, template: str | None) -> list[Probe]:
    """The probe file's rows, read with the settings the eval data was read with; none without a file."""
    if path is None:
        return []
    check_probes_file(str(path))
    config = Config(model=model_name(trainer.model), max_length=_max_length(trainer, tokenizer))
    return load_probes(str(path), config, tokenizer, template)


def _max_length(trainer: Any, tokenizer: Any) -> int:
    """TRL's max_length when the trainer has one, else the tokenizer's (capped): what its rows are cut to."""
    return getattr(trainer.args, "max_length", None) or min(tokenizer.model_max_length, DEFAULT_MAX_LENGTH)


def _head(dataset: Any, count: int) -> list[dict[str, Any]]:
    """The first `count` rows as dicts: a `datasets` Dataset or IterableDataset, or any indexable dataset."""
    if hasattr(dataset, "take") and not hasattr(dataset, "__len__"):
        return [dict(row) for row in dataset.take(count)]
    if hasattr(dataset, "select"):
        return [dict(row) for row in dataset.select(range(min(count, len(dataset))))]
    return [dict(dataset[i]) for i in range(min(count, len(dataset)))]


def _documents(rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Packed rows (`seq_lengths` beside their ids) as one row per document; other rows as they are."""
    if not rows or "seq_lengths" not in rows[0]:
        return rows
    documents: list[dict[str, Any]] = []
    for row in rows:
        start = 0
        for length in row["seq_lengths"]:
            documents.append({key: row[key][start : start + length] for key in ("input_ids", "labels") if key in row})
            start += length
    return documents[:count]


def model_name(model: Any) -> str:
    """The name or folder the model was loaded from (the base model's, under a PEFT adapter)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    return str(getattr(config, "_name_or_path", "") or getattr(base, "name_or_path", "") or type(base).__name__)


def adapter_settings(model: Any) -> dict[str, Any] | None:
    """The active PEFT adapter's settings (LoRA rank, alpha, dropout, target modules...), None without one."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    adapter = getattr(model, "active_adapter", None) or next(iter(configs))
    settings = configs[adapter]
    keys = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "use_dora", "use_rslora", "bias")
    found = {key: getattr(settings, key) for key in keys if hasattr(settings, key)}
    found = {key: sorted(value) if isinstance(value, (set, frozenset)) else value for key, value in found.items()}
    found["peft_type"] = str(getattr(found.get("peft_type"), "value", found.get("peft_type")))
    found["adapter"] = adapter
    if hasattr(model, "get_nb_trainable_parameters"):
        found["trainable_parameters"], found["parameters"] = model.get_nb_trainable_parameters()
    return found


def dataset_name(dataset: Any) -> str:
    """What the ledger calls the training data: the dataset's own name when it has one, else its kind and size."""
    info = getattr(dataset, "info", None)
    named = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)
    if named and named not in ("json", "csv", "parquet", "generator"):
        return str(named)
    size = f" of {len(dataset):,} rows" if hasattr(dataset, "__len__") else ""
    return f"{type(dataset).__name__}{size}"
