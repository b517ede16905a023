"""Run under `torchrun --nproc-per-node 2` (gloo, CPU): rank 0 generates alone with an FSDP2 model; rank 1 goes on.

This is what a rank-0-only full eval does under FSDP: rank 0's `generate` waits for rank 1 to share its
parameter shards, rank 1 waits at its next collective, and both fail at the process-group timeout
(TIMEOUT_S here, 30 minutes by default). Exit status 0 means rank 0 generated alone (no hang); 3 means a
rank failed, and each rank prints how long it waited.
Usage: torchrun --nproc-per-node 2 rank0_alone.py TIMEOUT_S
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from twotier.engine import distributed as td


def main(timeout_s: float) -> int:
    td.init_from_launcher(timedelta(seconds=timeout_s))
    me = td.rank()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4)).eval()  # fmt: skip
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    dist.barrier()  # both ranks are ready: what follows is the only difference between them
    started = time.perf_counter()
    try:
        if me == 0:
            print("rank 0: generating alone", flush=True)
            with torch.no_grad(), td.generation_ready(model) as target:
                ids = torch.tensor([[1, 5, 6, 7]])
                target.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
        else:
            print("rank 1: waiting at the next collective", flush=True)
        dist.barrier()
    except Exception as err:  # noqa: BLE001 - the failure is the finding: print it and exit non-zero
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"rank {me}: failed after {time.perf_counter() - started:.1f} s: {type(err).__name__}: {first}", flush=True
        )
        return 3
    print(f"rank {me}: completed in {time.perf_counter() - started:.1f} s", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1])))
