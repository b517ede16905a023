"""A user's own `Trainer` script joined by `TwoTier(trainer)`, launched by tests/test_distributed.py under torchrun.

Usage: torchrun --nproc-per-node 2 one_call.py OUT. Each rank writes OUT/rank<N>.json: its own loss figures at
each tier step (read from the tap just before twotier sums them over the ranks), whether it writes the ledger,
a full eval of the model sharded with FSDP2, and on rank 0 the validation losses one process gets on the same
weights, for the test to hold the run against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments
from transformers.distributed import DistributedConfig

# Imported before the arguments are built: under torchrun on CPUs they then choose gloo and one run.
from twotier.engine import TwoTier
from twotier.engine.config import load_config
from twotier.engine.data import collate, load_splits
from twotier.engine.distributed import generation_ready
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


def fail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected on rank 1")


def generation_target_is_lockstep(model: Any) -> bool:
    with generation_ready(model) as target:
        return target.lockstep


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
        model_path = resolve_model_path(config, Path(config.output_dir), write=args.local_process_index == 0)
        model, tokenizer = load_model(model_path)
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
    evaluator = joined.evaluator
    assert evaluator is not None
    prompt = evaluator.probes[0].prompt_ids
    # The untrained model sharded at load time (FSDP2): every forward and `generate` is a collective, so the
    # full eval completes only if both ranks run as many of them (no hang), and must score what one process does.
    fsdp2 = AutoModelForCausalLM.from_pretrained(model_path, distributed_config=DistributedConfig(fsdp_size=world))
    sharded = evaluator.run_guarded(fsdp2, prompt, 0)
    found["fsdp2"] = {"sharded": generation_target_is_lockstep(fsdp2), "val_loss": getattr(sharded, "val_loss", None),
                      "answers": len(getattr(sharded, "probes", ())), "error": getattr(sharded, "error", None)}  # fmt: skip
    # An eval error on rank 1 alone (before its first forward): agreed on, so both ranks end the eval with it.
    if rank == 1:
        evaluator._scoring_batch = fail  # type: ignore[method-assign]
    failed = evaluator.run_guarded(trainer.model, prompt, 0)
    found["failed_eval"] = getattr(failed, "error", None)
    dist.barrier()
    dist.destroy_process_group()  # from here each process evaluates alone
    if rank == 0:
        found["val_loss_alone"] = evaluator.run(trainer.model, prompt).val_loss
        found["fsdp2"]["val_loss_alone"] = evaluator.run(load_model(model_path)[0], prompt).val_loss
    (out / f"rank{rank}.json").write_text(json.dumps(found), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
