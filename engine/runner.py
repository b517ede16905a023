"""A training run in a background thread that its owner can pause, unpause and stop.

The thread prepares the model and data, records the run, trains, and always ends by flushing the
ledger and setting the run's final status. Everything it reports crosses `events`, a queue. This
module imports no torch: the thread does, so whoever owns the run (the app) can open first.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store import (
    LedgerReader,
    LedgerWriter,
    RunInfo,
    RunStatus,
    StepEvent,
    TwoTierError,
    create_run,
    open_ledger,
    reopen_run,
)
from ..store.errors import first_line
from .config import Config
from .errors import ConfigError
from .resume import ResumePoint
from .steering import Steering

if TYPE_CHECKING:
    from transformers import TrainerCallback, TrainingArguments

    from .distributed import WorldInfo

log = logging.getLogger("twotier.engine")


@dataclass(frozen=True)
class RunEnded:
    """The last message of a run: how it ended. `run_id` is None when it ended before it was recorded."""

    status: RunStatus
    run_id: str | None
    error: str | None = None
    exit_code: int = 0
    step: int | None = None  # the step training ended at (a stop ends after the last logged step)


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run went on: from the checkpoint at `step`; `superseded` of its events came after it."""

    step: int
    superseded: int


class TrainingRun:
    """Start, pause, unpause and stop a run from the thread that owns it; read `events` for progress."""

    def __init__(
        self,
        config: Config,
        *,
        callbacks: Sequence[TrainerCallback] = (),
        resume: ResumePoint | None = None,
        progress_bars: bool = False,
    ) -> None:
        """`callbacks`: extra Trainer callbacks, called after twotier's own. `resume`: continue that run in
        place from its checkpoint (see `engine.resume.find_resume_point`), with its own config. `progress_bars`:
        let transformers and datasets draw their bars on stderr while loading (headless)."""
        self.config = resume.config if resume is not None else config
        self.progress_bars = progress_bars
        self.callbacks = tuple(callbacks)
        self.resume_point = resume
        self.run_id = resume.run_id if resume is not None else uuid.uuid4().hex[:12]
        self.events: queue.Queue[StepEvent | RunEnded] = queue.Queue()
        self.ended: RunEnded | None = None
        # Set by the run's thread before its first event when it continues a run (read it after one).
        self.resumed: Resumed | None = None
        self._nonfinite: str | None = None
        self._writer: LedgerWriter | None = None
        self.world: WorldInfo | None = None  # who takes part (ranks, nodes, backend), once the run is prepared
        self.steering = Steering()
        self._thread = threading.Thread(target=self._main, name="twotier-train", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        """Hold the run after the current step (its status becomes paused)."""
        self.steering.pause()

    def unpause(self) -> None:
        self.steering.unpause()

    def stop(self, *, interrupted: bool = True) -> None:
        """Finish the current step, write a checkpoint, flush the ledger, mark the run stopped.
        Asked while the model and data load, the run ends stopped before its first step.
        `interrupted`: a signal or the owner stopped it, not a user's request (a daemon takes it up again)."""
        self.steering.stop(interrupted=interrupted)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def failure(self) -> str | None:
        """Why training must end as failed although no exception was raised: a NaN loss, a ledger that cannot be written."""
        if self._writer is not None and self._writer.failure is not None:
            return f"the ledger cannot be written: {self._writer.failure}"
        return self._nonfinite if self.config.stop_on_nan else None

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _main(self) -> None:
        try:
            trainer, writer = self._prepare()
            if trainer is None:
                self._end(RunEnded(RunStatus.STOPPED, None))
                return
            steering = self.steering
            if self._agreed_stop():  # asked while the model and data loaded (on any rank)
                if writer is not None:
                    writer.close(RunStatus.STOPPED, done=steering.carried_out("stop"), interrupted=steering.interrupted)
                self._end(RunEnded(RunStatus.STOPPED, self.run_id))
                return
            if writer is not None:
                writer.training_began()
            checkpoint = self.resume_point.checkpoint if self.resume_point is not None else None
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            if self.failure is not None:
                self._fail(writer, self.failure, 1)
                return
            status = RunStatus.STOPPED if steering.stopped else RunStatus.FINISHED
            if writer is not None:
                step = trainer.state.global_step
                writer.close(status, done=steering.carried_out("stop"), interrupted=steering.interrupted, step=step)
            self._end(RunEnded(status, self.run_id, step=trainer.state.global_step))
        except TwoTierError as err:
            self._fail(self._writer, str(err), err.exit_code)
        except BaseException as err:  # noqa: BLE001 - any crash becomes a failed run, reported once
            log.debug("training failed", exc_info=True)
            self._fail(self._writer, f"{type(err).__name__}: {err}", 1)

    def _agreed_stop(self) -> bool:
        """Whether a stop came on any rank (a collective in a multi-process run: all ranks start, or none)."""
        from .distributed import agree

        return agree(stop=self.steering.stop_requested).stop

    def _end(self, ended: RunEnded) -> None:
        self.ended = ended
        self.events.put(ended)

    def _fail(self, writer: LedgerWriter | None, error: str, exit_code: int) -> None:
        if writer is not None:
            try:
                writer.close(RunStatus.FAILED, error)
            except TwoTierError as err:
                if writer.failure is None or writer.failure not in error:
                    error = f"{error}; and the ledger could not record it: {err}"
        self._end(RunEnded(RunStatus.FAILED, self.run_id if writer else None, error, exit_code))

    def _prepare(self) -> tuple[Any, LedgerWriter | None]:
        """The Trainer and the run's writer (None on a rank other than 0); no trainer when a stop came before
        the run was recorded.

        What can be checked without reading (the config, the files named) is checked first, so a bad config or a
        missing file writes nothing to the ledger; then the run is recorded, and loading the model and the data,
        which can take minutes, reports its phase through the ledger to any viewer."""
        from transformers import PrinterCallback, ProgressCallback, set_seed
        from transformers.utils import logging as hf_logging

        from .control import ControlCallback
        from .data import collate, load_splits
        from .distributed import broadcast_object, world_info
        from .evaluate import Evaluator
        from .loss import LossTap
        from .matching import parse_match_rule
        from .model import load_model, resolve_model_path, with_lora
        from .probes import load_probes
        from .tiers import TierSettings, TwoTierCallback
        from .trainer import TwoTierTrainer

        hf_logging.set_verbosity_error()
        self.config.check_sources()
        if self.steering.stopped:
            return None, None
        # The arguments first: under torchrun or accelerate launch, building them opens the process group.
        arguments = training_arguments(self.config, Path(self.config.output_dir) / self.run_id)
        self.world = world_info(arguments.distributed_state.distributed_type.value)
        if self.world.world_size > 1:
            # Rank 0 decides the run, its resume point and its config; every rank then agrees on output_dir.
            self.run_id, self.resume_point, self.config = broadcast_object(
                (self.run_id, self.resume_point, self.config)
            )
            arguments = training_arguments(self.config, Path(self.config.output_dir) / self.run_id)
        config = self.config
        if self.world.is_main:
            ledger = self._record_run(config.dataset, global_batch(arguments))
            writer: LedgerWriter | None = LedgerWriter(ledger, self.run_id, on_request=self.steering.request)
        else:
            writer = None  # one writer: rank 0's; the others publish nothing and act on what rank 0 reads
        self._writer = writer
        phases = Phases(writer)
        set_seed(config.seed)
        phases("loading the model")
        # The demo's files are written by the main process of each node, then read by the others.
        with arguments.main_process_first(local=True, desc="writing and loading the model and data"):
            model, tokenizer = load_model(
                resolve_model_path(config, Path(config.output_dir), write=self.world.local_rank == 0),
                trust_remote_code=config.trust_remote_code,
                dtype=config.dtype,
                attn_implementation=config.attn_implementation,
                progress_bars=self.progress_bars and self.world.is_main,
            )
            if config.peft is not None:
                model = with_lora(model, config.peft)
            splits = load_splits(
                config, tokenizer, Path(config.output_dir), phases, show_bars=self.progress_bars and self.world.is_main
            )
            probes = load_probes(config.probes, config, tokenizer, splits.template) if config.probes else []
        evaluator = Evaluator(
            tokenizer,
            splits.validation,
            eval_samples=config.eval_samples,
            probe_size=config.probe_size,
            max_new_tokens=config.max_new_tokens,
            batch_size=max(config.batch_size, 16),
            reader=splits.reader,
            rule=parse_match_rule(config.match, "config"),
            extra_probes=probes,
        )
        evaluator.covers_prompt = splits.loss_covers_prompt
        tap = LossTap()
        tiers = TwoTierCallback(
            run_id=self.run_id,
            tokenizer=tokenizer,
            publish=partial(self._publish, writer) if writer is not None else _publish_nothing,
            evaluator=evaluator,
            loss_tap=tap,
            settings=TierSettings(config.log_steps, config.eval_steps, config.gap_threshold),
            reader=splits.reader,
        )
        trainer = TwoTierTrainer(
            model=model,
            args=arguments,
            train_dataset=splits.train,
            data_collator=partial(collate, pad_id=tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=[tiers, ControlCallback(self.steering, writer, lambda: self.failure), *self.callbacks],
            loss_tap=tap,
        )
        for noisy in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(noisy)
        return trainer, writer

    def _record_run(self, dataset_name: str, batch: int) -> Any:
        """Open the ledger and record the run (or reopen the one being resumed, now written by this process);
        with who takes part in it: `batch` is the examples of one optimizer step over every rank."""
        config = self.config
        ledger = open_ledger(config.ledger)
        now = time.time()
        assert self.world is not None  # known once the arguments are built
        world = {**self.world.record(), "global_batch_size": batch}
        if self.resume_point is not None:
            self._tell_world_change(world)
            superseded = reopen_run(ledger, self.run_id, self.resume_point.step, **world)
            if self.resume_point.checkpoint is not None or superseded:
                # Else nothing came before: a queued run the daemon starts, which is no resume to report.
                self.resumed = Resumed(self.resume_point.step, superseded)
            return ledger
        name = config.run_name or f"{Path(config.model).name}-{time.strftime('%Y%m%d-%H%M%S')}"
        create_run(
            ledger,
            RunInfo(
                id=self.run_id,
                name=name,
                status=RunStatus.RUNNING,
                model=config.model,
                dataset=dataset_name,
                config=config.to_dict(),
                started_at=now,
                heartbeat_at=now,
                opened_at=now,
                max_steps=config.max_steps,
                host=socket.gethostname(),
                pid=os.getpid(),
                phase=Phases.start("loading the model", now),
                **world,
            ),
        )
        return ledger

    def _tell_world_change(self, world: dict[str, Any]) -> None:
        """A run resumed on another number of processes goes on, with a warning: its global batch changes, and
        the ranks it lacks start from fresh random states (data order and dropout differ from an unbroken run)."""
        with LedgerReader(self.config.ledger) as reader:
            before = reader.run(self.run_id)
        if before.world_size != world["world_size"] and before.global_batch_size is not None:
            log.warning(
                "run %s was trained on %d processes (global batch %d) and resumes on %d (global batch %d)",
                self.run_id, before.world_size, before.global_batch_size, world["world_size"],
                world["global_batch_size"],
            )  # fmt: skip

    def _publish(self, writer: LedgerWriter, event: StepEvent) -> None:
        writer.submit(event)
        self.events.put(event)
        bad = event.first_nonfinite(("loss", "batch_loss"))
        if bad is not None and self._nonfinite is None:
            self._nonfinite = f"the loss became {bad[1]} at step {event.step} on example {event.prompt[:80]!r}"
            if not self.config.stop_on_nan:
                log.warning("%s; training goes on (stop_on_nan is off)", self._nonfinite)


def _publish_nothing(event: StepEvent) -> None:
    """The publish of a rank other than 0: rank 0 writes every event, with the losses over all ranks."""


def global_batch(arguments: TrainingArguments) -> int:
    """Examples per optimizer step over every rank: per device, times accumulation, times processes."""
    per_step = arguments.per_device_train_batch_size * arguments.gradient_accumulation_steps
    return int(per_step * max(arguments.world_size, 1))


class Phases:
    """What the run does before training, sent to the ledger (`RunInfo.phase`) as `progress(phase, done, total)`
    calls come: at most twice a second, and whenever the phase changes or ends. Without a writer (a rank other
    than 0), nothing is sent."""

    NAMES = {"loading": "reading the data", "tokenizing": "tokenizing"}  # the data pipeline's phases, shown

    def __init__(self, writer: LedgerWriter | None, every_s: float = 0.5) -> None:
        self.writer = writer
        self.every_s = every_s
        self._name: str | None = None
        self._since = self._sent = 0.0

    @staticmethod
    def start(name: str, now: float) -> dict[str, Any]:
        return {"name": name, "done": 0, "total": None, "since": now}

    def __call__(self, phase: str, done: int = 0, total: int | None = None) -> None:
        name, now = self.NAMES.get(phase, phase), time.time()
        if name != self._name:
            self._name, self._since = name, now
        elif now - self._sent < self.every_s and done != total:
            return
        self._sent = now
        if self.writer is not None:
            self.writer.set_phase({**self.start(name, self._since), "done": done, "total": total})


def training_arguments(config: Config, run_dir: Path) -> TrainingArguments:
    """TrainingArguments from the config; `training_args` overrides and is validated by the library."""
    import torch
    from transformers import TrainingArguments

    from .distributed import launched_world_size, trainer_needs_use_cpu

    values: dict[str, Any] = {
        "output_dir": str(run_dir),
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "data_seed": config.seed,
        "logging_strategy": "no",
        "eval_strategy": "no",
        "save_strategy": "steps",
        "save_steps": config.eval_steps or 500,
        "report_to": "none",
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "save_total_limit": 2,
    }
    if trainer_needs_use_cpu():
        # Without it accelerate reports no distributed run on a CPU-only machine: each rank would train alone.
        values["use_cpu"] = True
    if launched_world_size() > 1:
        values["ddp_find_unused_parameters"] = False  # every parameter of a causal LM gets a gradient
    values.update(config.training_args)
    try:
        return TrainingArguments(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"training_args: {first_line(err)}") from err
