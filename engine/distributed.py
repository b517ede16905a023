"""The few collectives the tiers need when torchrun or accelerate starts several processes, in plain torch.distributed.

Each function answers as one process would (and communicates nothing) when no process group of more
than one rank exists, so a single-process run behaves as before. Each function that communicates is a
collective: every rank must call it, the same number of times, in the same order, or the ranks hang
until the process-group timeout.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
R = TypeVar("R")
Group = Any  # a torch.distributed ProcessGroup, or None for the default group


def is_distributed() -> bool:
    """A process group of more than one rank is open in this process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def launched_world_size() -> int:
    """How many processes the launcher started (torchrun, accelerate launch, srun torchrun), before any group exists."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def trainer_needs_use_cpu() -> bool:
    """Whether `TrainingArguments` must get `use_cpu=True` for a multi-process run to be one run.

    Under torchrun on a machine without an accelerator, accelerate 1.15 opens a process group but reports
    `DistributedType.NO`: each rank then trains alone on the whole data set. With `use_cpu=True` it
    reports `MULTI_CPU`, uses gloo, and the Trainer wraps the model in DDP and shards the data.
    """
    return launched_world_size() > 1 and not has_accelerator()


def launched_rank() -> int:
    """This process's rank as the launcher set it (RANK), before any group exists; 0 when launched alone."""
    return int(os.environ.get("RANK", "0") or 0)


def cpu_by_default() -> bool:
    """Under a launcher on a machine without an accelerator, make the `TrainingArguments` built from now on
    choose gloo and one run (accelerate reads ACCELERATE_USE_CPU), as if the script had passed `use_cpu=True`.

    For a user's own script, which builds its arguments itself: importing `twotier.engine.join` calls this, so a
    script that imports it first needs no change to run under torchrun on CPUs. Returns whether it did.
    """
    if not trainer_needs_use_cpu():
        return False
    os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    return True


def init_from_launcher(timeout: timedelta | None = None) -> bool:
    """Join the group the launcher describes in the environment (once); False when launched as one process.

    gloo without an accelerator; otherwise the library's default per device (NCCL for CUDA tensors), after
    binding this process to its local device as accelerate does. Usually not needed: constructing
    `TrainingArguments` opens the group; this is for work that must communicate before that.
    """
    if launched_world_size() <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    backend = None
    if not has_accelerator():
        backend = "gloo"
    elif torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend=backend, **kwargs)
    return True


def control_group(timeout: timedelta | None = None) -> Group:
    """A gloo group beside the default one, for flags and figures that live on the host.

    On NCCL, a flag all-reduced on the default group must first be copied to the GPU and waits for the
    GPU's queue; on a gloo side group it does not touch the GPU. Creating it is itself a collective.
    """
    if not is_distributed():
        return None
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    return dist.new_group(backend="gloo", **kwargs)


def collective_device(group: Group = None) -> torch.device:
    """Where a tensor must live for `group`'s backend: the host for gloo, the local device for NCCL and its kin."""
    backend = str(dist.get_backend(group)) if is_distributed() else "gloo"
    if "gloo" in backend or "mpi" in backend or not has_accelerator():
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    accelerator = torch.accelerator.current_accelerator()
    assert accelerator is not None  # has_accelerator() said there is one
    return torch.device(accelerator.type, torch.accelerator.current_device_index())


@dataclass(frozen=True)
class WorldInfo:
    """Who takes part in the run, as the ledger should record it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_count: int = 1
    backend: str | None = None
    distributed_type: str = "NO"
    hosts: tuple[str, ...] = field(default_factory=lambda: (socket.gethostname(),))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def record(self) -> dict[str, Any]:
        """The fields a run's row keeps (rank and local rank are this process's own, so they are left out)."""
        return {"world_size": self.world_size, "node_count": self.node_count, "backend": self.backend,
                "distributed_type": self.distributed_type, "hosts": sorted(set(self.hosts))}  # fmt: skip


def world_info(distributed_type: str | None = None) -> WorldInfo:
    """This process's place in the run; a collective when distributed (every rank's host name is gathered).

    `distributed_type`: what the Trainer uses (`args.distributed_state.distributed_type.value`), which
    torch.distributed cannot know (DDP, FSDP and DeepSpeed share one group); guessed from the backend if None.
    """
    if not is_distributed():
        return WorldInfo(distributed_type=distributed_type or "NO")
    # A node is a launcher agent: torchrun's GROUP_RANK tells apart two agents on one host (as in the tests).
    places: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(places, (socket.gethostname(), os.environ.get("GROUP_RANK")))
    hosts = [host for host, _ in places]
    backend = str(dist.get_backend())
    guessed = "MULTI_CPU" if collective_device().type == "cpu" else f"MULTI_{collective_device().type.upper()}"
    return WorldInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(dist.get_world_size()))),
        node_count=len(set(places)), backend=backend, distributed_type=distributed_type or guessed, hosts=tuple(hosts),
    )  # fmt: skip


def broadcast_object(value: T, *, src: int = 0, group: Group = None) -> T:
    """Rank `src`'s `value` on every rank (run id, resume point, output folder); `value` elsewhere is ignored."""
    if not is_distributed():
        return value
    box = [value if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=group, device=collective_device(group))
    return box[0]  # type: ignore[return-value]


def sum_across_ranks(values: torch.Tensor | Sequence[float], *, group: Group = None) -> torch.Tensor:
    """Element-wise sum over ranks in float64, in one all-reduce; one process gets its values back as float64.

    Meant for a handful of figures at a log step, e.g. [loss_sum, loss_tokens, input_tokens]: a
    token-weighted mean is then sum/tokens over every rank's batch, exact to float64 rounding.
    The result is on the device the values came from.
    """
    local = torch.as_tensor(values).detach()
    if not is_distributed():
        return local.to(torch.float64)
    buffer = local.to(device=collective_device(group), dtype=torch.float64, copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=group)
    return buffer.to(local.device)


def any_ranks(flags: Sequence[bool], *, group: Group = None) -> list[bool]:
    """For each flag, whether any rank raised it: several flags, one all-reduce."""
    if not is_distributed():
        return [bool(flag) for flag in flags]
    counts = sum_across_ranks([1.0 if flag else 0.0 for flag in flags], group=group)
    return [count > 0 for count in counts.tolist()]


def any_rank(flag: bool, *, group: Group = None) -> bool:
    """Whether any rank raised `flag`: agree on a failure or a stop before the next collective."""
    return any_ranks([flag], group=group)[0]


def first_failure(error: str | None, *, group: Group = None) -> str | None:
    """The first rank's error (prefixed with its rank) if any rank failed, on every rank; None if none did.

    The check between two phases of a full eval: a rank whose phase raised must not skip the next
    collective while the others enter it. Costlier than `any_rank` (it gathers strings), so it suits
    eval steps, not every step.
    """
    if not is_distributed():
        return error
    errors: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(errors, error, group=group)
    return next((f"rank {index}: {text}" for index, text in enumerate(errors) if text is not None), None)


@dataclass(frozen=True)
class StepAgreement:
    """What every rank decided together at a step boundary."""

    stop: bool = False
    pause: bool = False
    failure: bool = False


def agree(*, stop: bool = False, pause: bool = False, failure: bool = False, group: Group = None) -> StepAgreement:
    """One all-reduce so that every rank stops, pauses or gives up at the same step."""
    return StepAgreement(*any_ranks([stop, pause, failure], group=group))


def hold_while_paused(paused: Callable[[], bool], stopping: Callable[[], bool], *, poll_s: float = 0.5,
                      group: Group = None) -> StepAgreement:  # fmt: skip
    """Call on every rank at the same step boundary; returns once no rank is paused any more, or one stops.

    The ranks meet in one small all-reduce every `poll_s` and sleep in between, so no rank waits in a
    collective much longer than `poll_s`, however long the pause lasts: the process-group timeout
    (30 minutes by default, seconds in the tests) is never reached while paused.
    """
    while True:
        decided = agree(stop=stopping(), pause=paused(), group=group)
        if decided.stop or not decided.pause:
            return decided
        time.sleep(poll_s)


@dataclass(frozen=True)
class Share(Generic[T]):
    """This rank's contiguous part of a list, padded so that every rank holds the same number of items."""

    items: list[T]  # the first `real` are this rank's, the rest repeat the list's last item
    start: int  # index in the whole list of items[0]
    real: int
    total: int

    @property
    def padding(self) -> int:
        return len(self.items) - self.real


def split_padded(items: Sequence[T]) -> Share[T]:
    """Split `items` over the ranks in order, as evenly as possible, padded to the same count on every rank.

    Under FSDP, ZeRO-3 or any sharded model, every forward and every `generate` is a collective: ranks
    must run the same number of them, so a rank with fewer items works on padding (and drops its result).
    Like accelerate's `split_between_processes(apply_padding=True)`, without needing an Accelerator.
    """
    total, ranks, me = len(items), world_size(), rank()
    base, extra = divmod(total, ranks)
    start = me * base + min(me, extra)
    real = base + (1 if me < extra else 0)
    width = math.ceil(total / ranks) if total else 0
    mine = list(items[start : start + real])
    if width > real:
        mine.extend([items[-1]] * (width - real))
    return Share(mine, start, real, total)


def gather_in_order(local_results: Sequence[R], share: Share[Any], *, group: Group = None) -> list[R]:
    """Every rank's results for its `share`, padding dropped, in the order of the original list, on every rank.

    A collective (all_gather_object): every rank calls it, also one whose share is padding only.
    """
    if len(local_results) != len(share.items):
        raise ValueError(f"gather_in_order: {len(local_results)} results for a share of {len(share.items)} items")
    mine = list(local_results[: share.real])
    if not is_distributed():
        return mine
    parts: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(parts, mine, group=group)
    return [result for part in parts for result in part]


B = TypeVar("B")
P = TypeVar("P")
Out = TypeVar("Out")


def run_in_lockstep(
    batches: Sequence[B],
    prepare: Callable[[B], P],
    forward: Callable[[P], Out],
    finish: Callable[[B, Out], Sequence[R]],
    *,
    lockstep: bool,
    group: Group = None,
) -> tuple[list[R], str | None]:
    """Run a full-eval phase batch by batch so that one rank's error never leaves the others in a collective.

    Every rank must pass the same number of batches (see `split_padded`). For each batch: `prepare` it
    (local), agree whether any rank has failed so far (one small all-reduce), run `forward` (the model:
    a collective when `lockstep`), then `finish` it (local). An error in `prepare` or `finish` is agreed on
    at the next boundary and ends the phase on every rank: (results so far, "rank N: error"). An error
    inside `forward` is caught the same way when the model is not sharded; when it is (`lockstep`), the
    other ranks are already inside that forward's collectives, so nothing can be agreed: it propagates
    and the launcher ends the job.
    """
    results: list[R] = []
    error: str | None = None
    for batch in batches:
        prepared: Any = None
        if error is None:
            try:
                prepared = prepare(batch)
            except Exception as err:  # noqa: BLE001 - agreed on below, then reported by the caller
                error = _describe(err)
        if any_rank(error is not None, group=group):
            return results, first_failure(error, group=group)
        try:
            output = forward(prepared)
        except Exception as err:  # noqa: BLE001
            if lockstep:
                raise
            error = _describe(err)
            continue
        try:
            results.extend(finish(batch, output))
        except Exception as err:  # noqa: BLE001 - agreed on at the next boundary
            error = _describe(err)
    if any_rank(error is not None, group=group):
        return results, first_failure(error, group=group)
    return results, None


class RankFailed(Exception):
    """A sharded phase failed on some rank; every rank raises it, with the same message naming that rank."""


def sharded(
    items: Sequence[T],
    batch_size: int,
    prepare: Callable[[list[T]], P],
    forward: Callable[[P], Out],
    finish: Callable[[list[T], Out], Sequence[R]],
    *,
    lockstep: bool,
    group: Group = None,
) -> list[R]:
    """One result per item of `items`, in order, on every rank: each rank works on its padded share
    (`split_padded`) in batches of `batch_size` through `run_in_lockstep`, and the shares are gathered.

    `finish` returns one result per item of its batch. One process runs every item itself and communicates
    nothing. Raises `RankFailed` on every rank at once when any rank's `prepare`, `forward` or `finish` failed.
    """
    share = split_padded(items)
    size = max(batch_size, 1)
    batches = [share.items[start : start + size] for start in range(0, len(share.items), size)]
    results, failure = run_in_lockstep(batches, prepare, forward, finish, lockstep=lockstep, group=group)
    if failure is not None:
        raise RankFailed(failure)
    return gather_in_order(results, share, group=group)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@dataclass(frozen=True)
class GenerationTarget:
    """The module to call `generate` on, and whether the ranks must call it in lock-step."""

    module: Any
    lockstep: bool  # parameters are sharded: every rank runs every forward, the same number of times

    @property
    def device(self) -> torch.device:
        """The module's device, so that code written for a model (`Evaluator.generate`) takes a target as is."""
        return getattr(self.module, "device", torch.device("cpu"))

    def generate(self, **kwargs: Any) -> Any:
        """`generate` with `synced_gpus` on when sharded over several ranks, so that a rank that has finished
        its sequences keeps taking part in the others' forwards until all have finished."""
        if self.lockstep and is_distributed():
            kwargs.setdefault("synced_gpus", True)
        return self.module.generate(**kwargs)


@contextmanager
def generation_ready(model: torch.nn.Module) -> Iterator[GenerationTarget]:
    """Make a plain, DDP, FSDP1, FSDP2 or DeepSpeed model usable for `generate` inside the block.

    DDP: the wrapped module, whose forward needs no other rank (rank 0 may generate alone). FSDP1: the
    root's own parameters gathered (`summon_full_params(recurse=False)`, a collective) and the wrapped
    module, whose inner FSDP units gather their own in each forward. FSDP2 and ZeRO-3: the model as it is;
    each forward gathers parameters. In the last three, `lockstep` is True: enter the block and call
    `generate` on every rank the same number of times (see `split_padded`), or every rank hangs.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        yield GenerationTarget(model.module, lockstep=False)
        return
    fsdp1 = _fsdp1_class()
    if fsdp1 is not None and isinstance(model, fsdp1):
        with fsdp1.summon_full_params(model, recurse=False, writeback=False):
            yield GenerationTarget(model.module, lockstep=is_distributed())
        return
    inner: Any = model.module if type(model).__name__ == "DeepSpeedEngine" else model
    yield GenerationTarget(inner, lockstep=is_distributed() and _is_sharded(inner))


def _fsdp1_class() -> Any:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # a torch built without distributed support
        return None
    return FullyShardedDataParallel


def _is_sharded(model: torch.nn.Module) -> bool:
    """FSDP2 (`fully_shard` anywhere inside), FSDP1 units inside an unwrapped root, or ZeRO-3 partitioned parameters."""
    kinds: tuple[type, ...] = ()
    try:
        from torch.distributed.fsdp import FSDPModule

        kinds = (FSDPModule,)
    except ImportError:  # a torch built without distributed support
        pass
    fsdp1 = _fsdp1_class()
    kinds += (fsdp1,) if fsdp1 is not None else ()
    if kinds and any(isinstance(module, kinds) for module in model.modules()):
        return True
    return any(hasattr(parameter, "ds_id") for parameter in model.parameters())
