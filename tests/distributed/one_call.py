"""A user's own `Trainer` script joined by `TwoTier(trainer)`, launched by tests/test_distributed.py under torchrun.

Usage: torchrun --nproc-per-node 2 one_call.py OUT. Each rank writes OUT/rank<N>.json: its own loss figures at
each tier step (read from the tap just before twotier sums them over the ranks), whether it writes the ledger,
and on rank 0 the validation loss one process gets on the final weights, for the test to hold the run against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist
from transformers import Trainer, TrainerCallback, TrainingArguments

# Imported before the arguments are built: under torchrun on CPUs they then choose gloo and one run.
from twotier.engine import TwoTier
from twotier.engine.config import load_config
from twotier.engine.data import collate, load_splits
from twotier.engine.model import load_model, resolve_model_path

LOG_STEPS, EVAL_STEPS, MAX_STEPS = 2, 4, 8


class LocalFigures(TrainerCallback):
    """This rank's own step loss (sum and tokens) at each tier step, before twotier's callback reads the tap."""

    def __init__(self) -> None:
        self.joined: TwoTier | None = None
        self.steps: dict[int, list[float]] = {}
        self.writes: bool | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.joined is not None
        if self.writes is None:
            self.writes = self.joined._writer is not None
        if state.global_step % LOG_STEPS == 0:
            tap = self.joined.tap
            self.steps[state.global_step] = [float(tap._step_sum), float(tap._step_tokens)]


def main() -> int:
    out = Path(sys.argv[1])
    # A user's arguments, without use_cpu: importing twotier made them one gloo run on this CPU-only machine.
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), max_steps=MAX_STEPS, per_device_train_batch_size=4, learning_rate=3e-3,
        seed=0, report_to="none", save_strategy="no", disable_tqdm=True, remove_unused_columns=False,
        ddp_find_unused_parameters=False,
    )  # fmt: skip
    config = load_config(None, {"max_length": 64, "output_dir": str(out / "work")})
    with args.main_process_first(local=True):
        model, tokenizer = load_model(
            resolve_model_path(config, Path(config.output_dir), write=args.local_process_index == 0)
        )
        splits = load_splits(config, tokenizer, Path(config.output_dir))

    figures = LocalFigures()
    trainer = Trainer(
        model=model, args=args, train_dataset=splits.train,
        eval_dataset=[{"input_ids": e.input_ids, "labels": e.labels} for e in splits.validation],
        data_collator=lambda batch: collate(batch, tokenizer.pad_token_id), processing_class=tokenizer,
        callbacks=[figures],
    )  # fmt: skip
    joined = TwoTier(
        trainer, out / "ledger.db", log_steps=LOG_STEPS, eval_steps=EVAL_STEPS, eval_samples=11, probe_size=4,
        max_new_tokens=4,
    )  # fmt: skip
    trainer.add_callback(joined)
    figures.joined = joined
    trainer.train()
    rank, world = dist.get_rank(), dist.get_world_size()
    found: dict[str, Any] = {"rank": rank, "world_size": world, "run_id": joined.run_id, "writes": figures.writes,
                             "steps": figures.steps}  # fmt: skip
    dist.barrier()
    dist.destroy_process_group()  # from here each process evaluates alone
    if rank == 0 and joined.evaluator is not None:
        alone = joined.evaluator.run(trainer.model, joined.evaluator.probes[0].prompt_ids)
        found["val_loss_alone"] = alone.val_loss
    (out / f"rank{rank}.json").write_text(json.dumps(found), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
