"""The demo workload every training measurement shares: model, tokenizer and data built once under runs/bench/.

Trainers are assembled from the engine's own pieces, as engine/runner.py does, so that a
measurement can add a clock or swap the fast log without the runner's thread and queue.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback, set_seed
from transformers.utils import logging as hf_logging

from twotier.engine.cadence import TierSettings
from twotier.engine.config import Config, load_config
from twotier.engine.data import Splits, collate, load_splits
from twotier.engine.evaluate import Evaluator
from twotier.engine.loss import LossTap
from twotier.engine.model import load_model, resolve_model_path
from twotier.engine.runner import training_arguments
from twotier.engine.tiers import TwoTierCallback
from twotier.engine.trainer import TwoTierTrainer
from twotier.store import LedgerWriter, RunInfo, RunStatus, StepEvent, create_run, open_ledger

BENCH_DIR = Path("runs/bench")
# Every throw-away ledger holds one run, so its id can be fixed and the tiers callback can use it.
RUN_ID = "bench"

# The shipped config.json's demo settings, so the figures describe what `make run` trains.
SETTINGS: dict[str, Any] = {
    "batch_size": 32,
    "learning_rate": 3e-3,
    "max_length": 64,
    "max_new_tokens": 12,
    "eval_samples": 64,
    "probe_size": 16,
    "seed": 0,
    "output_dir": str(BENCH_DIR / "work"),
    "ledger": str(BENCH_DIR / "unused.db"),
}


@dataclass(frozen=True)
class Workload:
    config: Config
    model_path: str
    tokenizer: Any
    splits: Splits

    def model(self) -> Any:
        """A fresh copy of the demo model with the same initial weights every time."""
        set_seed(self.config.seed)
        return load_model(self.model_path)[0]

    def evaluator(
        self, *, eval_samples: int | None = None, probe_size: int | None = None, batch_size: int | None = None
    ) -> Evaluator:
        """The runner's evaluator; validation is repeated when more samples are asked than the demo holds."""
        samples = eval_samples or self.config.eval_samples
        validation = self.splits.validation
        repeats = -(-samples // len(validation))
        return Evaluator(
            self.tokenizer,
            (validation * repeats)[:samples],
            eval_samples=samples,
            probe_size=self.config.probe_size if probe_size is None else probe_size,
            max_new_tokens=self.config.max_new_tokens,
            batch_size=batch_size or max(self.config.batch_size, 16),
        )

    def train_rows(self) -> Any:
        """The training set as the runner hands it to the Trainer: a `datasets.Dataset` of input_ids and labels."""
        return self.splits.train

    def collator(self) -> Callable[..., Any]:
        return partial(collate, pad_id=self.tokenizer.pad_token_id)

    def arguments(self, max_steps: int, run_dir: Path, **training_args: Any) -> Any:
        config = replace(self.config, max_steps=max_steps, training_args=training_args)
        return training_arguments(config, run_dir)


def load_workload() -> Workload:
    hf_logging.set_verbosity_error()
    config = load_config(None, SETTINGS)
    workdir = Path(config.output_dir)
    model_path = resolve_model_path(config, workdir)
    _, tokenizer = load_model(model_path)
    return Workload(config, model_path, tokenizer, load_splits(config, tokenizer, workdir))


@contextlib.contextmanager
def ledger_sink() -> Iterator[Callable[[StepEvent], None]]:
    """A real LedgerWriter on a throw-away ledger: what the runner publishes into."""
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        writer = open_run(Path(folder) / "ledger.db")
        try:
            yield writer.submit
        finally:
            writer.close(RunStatus.FINISHED)


def open_run(path: Path, run_id: str = RUN_ID) -> LedgerWriter:
    """A fresh run in the ledger at `path` and its writer."""
    ledger = open_ledger(path)
    now = time.time()
    create_run(
        ledger,
        RunInfo(
            id=run_id,
            name="bench",
            status=RunStatus.RUNNING,
            model="demo",
            dataset="demo",
            config={},
            started_at=now,
            heartbeat_at=now,
        ),
    )
    return LedgerWriter(ledger, run_id)


def two_tier_trainer(
    work: Workload,
    *,
    settings: TierSettings,
    max_steps: int,
    publish: Callable[[StepEvent], None],
    run_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> TwoTierTrainer:
    """The runner's trainer: TwoTierTrainer, its loss tap and the tiers callback, plus `callbacks`."""
    tap = LossTap()
    tiers = TwoTierCallback(
        run_id=RUN_ID,
        tokenizer=work.tokenizer,
        publish=publish,
        evaluator=work.evaluator() if settings.eval_steps else None,
        settings=settings,
        loss_tap=tap,
    )
    trainer = TwoTierTrainer(
        model=work.model(),
        args=work.arguments(max_steps, run_dir),
        train_dataset=work.train_rows(),
        data_collator=work.collator(),
        processing_class=work.tokenizer,
        callbacks=[tiers, *callbacks],
        loss_tap=tap,
    )
    quiet(trainer)
    return trainer


def quiet(trainer: Any) -> None:
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)


def scratch_dir() -> Path:
    folder = BENCH_DIR / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
