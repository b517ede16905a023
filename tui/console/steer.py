"""`twotier daemon`, `submit`, `queue`, `move`, `cancel`, `resubmit`, `pause`, `unpause`, `stop`, `log`.

The daemon's client commands: thin and fast (they never load torch), they only read and write the
ledger; the daemon is the only one that starts processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ...store import LedgerReader, RunStatus, TwoTierError
from ...store import queue as runs_queue
from ...store.control import request_control
from ...store.records import Action, RunInfo
from ..render import fmt_clock, fmt_steps
from ..text import printable

Handler = Callable[[argparse.Namespace, TextIO], int]
WAIT_POLL_S = 0.2


def add_commands(
    groups: Any, common: argparse.ArgumentParser, config_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register the commands under `twotier`; `config_flags` adds the config flags `submit` takes."""

    def add(name: str, handler: Handler, summary: str, *, with_ledger: bool = True) -> argparse.ArgumentParser:
        sub = groups.add_parser(name, parents=[common] if with_ledger else [], help=summary, description=summary)
        sub.set_defaults(handler=handler)
        return sub

    daemon = add("daemon", _daemon, "serve the ledger's queue of runs, one child process per run, until stopped")
    daemon.add_argument(
        "--parallel", type=int, default=None, metavar="N", help="runs at a time (default: 1, or one per GPU)"
    )
    daemon.add_argument("--gpus", metavar="LIST", help="GPU indexes to use, e.g. 0,1,2,3 (default: every visible GPU)")
    # submit takes the ledger as every config key, from config.json or --ledger
    submit = add(
        "submit", _submit, "queue a run (validated as a direct run would be); prints its id last", with_ledger=False
    )
    submit.add_argument("config", nargs="?", type=Path, help="config file (default: ./config.json if present)")
    config_flags(submit)
    add("queue", _queue, "the daemon's queue and its running runs")
    move = add("move", _move, "put a queued run at another place in the queue (1 is next)")
    move.add_argument("run", metavar="RUN")
    move.add_argument("position", type=int, metavar="POSITION")
    for name, handler, summary in (
        ("cancel", _cancel, "take a queued run off the queue"),
        ("resubmit", _resubmit, "queue a run that ended again, with its config"),
    ):
        add(name, handler, summary).add_argument("run", metavar="RUN")
    for action, summary in (
        (Action.PAUSE, "pause a run after its current step"),
        (Action.UNPAUSE, "let a paused run go on"),
        (Action.STOP, "stop a run cleanly: the step ends, a checkpoint is written, the ledger flushed"),
    ):
        sub = add(action.value, _steer, summary)
        sub.add_argument("run", metavar="RUN")
        sub.add_argument("--wait", action="store_true", help="wait until the run has done it, and say how long it took")
        sub.set_defaults(action=action)
    log = add("log", _log, "a run's output, as the daemon kept it")
    log.add_argument("run", metavar="RUN")
    log.add_argument("-f", "--follow", action="store_true", help="keep printing what the run writes")


def _daemon(args: argparse.Namespace, out: TextIO) -> int:
    from ...engine.daemon import Daemon, visible_gpus

    gpus = tuple(int(gpu) for gpu in args.gpus.split(",")) if args.gpus else visible_gpus()
    parallel = args.parallel if args.parallel is not None else max(1, len(gpus))
    return Daemon(Path(args.ledger), parallel=parallel, gpus=gpus).serve()


def _submit(args: argparse.Namespace, out: TextIO) -> int:
    from ..cli import config_from_args

    config = config_from_args(args, args.config)
    config.check_sources()  # what a direct run would refuse before training: missing files
    for warning in config.tier_warnings():
        print(f"twotier: warning: {warning}", file=sys.stderr)
    ledger = Path(config.ledger)
    name = config.run_name or f"{Path(config.model).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = runs_queue.submit(ledger, config.to_dict() | {"ledger": str(ledger.resolve())}, name=name,
                            model=config.model, dataset=config.dataset, max_steps=config.max_steps, workdir=os.getcwd())  # fmt: skip
    with LedgerReader(ledger) as reader:
        position = len(runs_queue.queued(reader))
    print(f"queued {run.name} at position {position} of {ledger}", file=out)
    print(run.id, file=out)
    return 0


def _queue(args: argparse.Namespace, out: TextIO) -> int:
    from .ledger import table

    with LedgerReader(args.ledger) as reader:
        now = time.time()
        live = [run for run in reader.runs() if run.status.is_live]
        rows = [[run.id, printable(run.name), reader.run_status(run, now), "-", fmt_steps(run.last_step, run.max_steps),
                 fmt_clock(run.started_at)] for run in live]  # fmt: skip
        rows += [[run.id, printable(run.name), "queued", str(index), "-", fmt_clock(run.started_at)]
                 for index, run in enumerate(runs_queue.queued(reader), start=1)]  # fmt: skip
    lines = table(["id", "name", "status", "position", "steps", "submitted/started"], rows) if rows else ["(empty)"]
    out.write("\n".join(lines) + "\n")
    return 0


def _move(args: argparse.Namespace, out: TextIO) -> int:
    order = runs_queue.move(args.ledger, args.run, args.position)
    out.write("\n".join(f"{index}. {run.id}  {printable(run.name)}" for index, run in enumerate(order, start=1)) + "\n")
    return 0


def _cancel(args: argparse.Namespace, out: TextIO) -> int:
    run = runs_queue.cancel(args.ledger, args.run)
    print(f"cancelled {run.id} ({printable(run.name)})", file=out)
    return 0


def _resubmit(args: argparse.Namespace, out: TextIO) -> int:
    run = runs_queue.resubmit(args.ledger, args.run)
    print(f"queued {printable(run.name)} again", file=out)
    print(run.id, file=out)
    return 0


def _steer(args: argparse.Namespace, out: TextIO) -> int:
    asked = time.monotonic()
    run, request = request_control(args.ledger, args.run, args.action)
    print(f"{args.action.value} requested for run {run.id} ({printable(run.name)}); it acts at its next step end",
          file=out)  # fmt: skip
    if args.wait:
        done = _wait_until_done(Path(args.ledger), run, request.id or 0)
        print(f"run {run.id} is {done.status.value} at step {done.last_step}, "
              f"{time.monotonic() - asked:.1f} s after the request", file=out)  # fmt: skip
    return 0


def _wait_until_done(ledger: Path, run: RunInfo, request_id: int) -> RunInfo:
    while True:
        with LedgerReader(ledger) as reader:
            current = reader.run(run.id)
            done = reader.request_done(request_id)
            status = reader.run_status(current)
        if done:
            return current
        if status == "stale" or not (current.status.is_live or current.status is RunStatus.QUEUED):
            raise TwoTierError(f"run {run.id} ended {status} before acting on the request")
        time.sleep(WAIT_POLL_S)


def _log(args: argparse.Namespace, out: TextIO) -> int:
    with LedgerReader(args.ledger) as reader:
        run = reader.run(args.run)
    path = runs_queue.log_path(args.ledger, run.id)
    if not path.exists():
        raise TwoTierError(
            f"{path}: no output kept for run {run.id} (the daemon keeps the output of the runs it starts)"
        )
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        while True:
            chunk = handle.read()
            if chunk:
                out.write(printable(chunk))
                out.flush()
            if not args.follow:
                return 0
            with LedgerReader(args.ledger) as reader:
                if not reader.run(run.id).status.is_live and not chunk:
                    return 0
            time.sleep(WAIT_POLL_S)
