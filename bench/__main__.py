"""`python -m bench [--quick]`: run every measurement (issues 4, 10, 11 and 14) and print one table."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable

import torch

from .stats import Row, Table
from .workload import BENCH_DIR, Workload, load_workload

SECTIONS = (
    "fastlog",
    "distfastlog",
    "cadence",
    "evalcost",
    "ledgerwrite",
    "trackers",
    "reading",
    "startup",
    "app",
    "data",
    "sft",
)


def _runner(name: str, quick: bool, threads: int, work: Callable[[], Workload]) -> Callable[[], list[Row]]:
    from . import app, cadence, data, distfastlog, evalcost, fastlog, ledgerwrite, reading, sft, startup, trackers

    return {
        "fastlog": lambda: fastlog.measure(work(), quick),
        "distfastlog": lambda: distfastlog.measure(quick),
        "cadence": lambda: cadence.measure(work(), quick),
        "evalcost": lambda: evalcost.measure(work(), quick),
        "ledgerwrite": lambda: ledgerwrite.measure(quick),
        "trackers": lambda: trackers.measure(quick),
        "reading": lambda: reading.measure(quick),
        "startup": lambda: startup.measure(quick, threads),
        "app": lambda: app.measure(quick),
        "data": lambda: data.measure(quick),
        "sft": lambda: sft.measure(quick),
    }[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions (about 2 minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these measurements")
    # One thread by default: on a shared 2-core machine torch's two spinning threads lose whole time slices.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    loaded: list[Workload] = []

    def work() -> Workload:
        if not loaded:
            loaded.append(load_workload())
        return loaded[0]

    table = Table()
    for name in args.only or SECTIONS:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        section_started = time.perf_counter()
        try:
            table.add(_runner(name, args.quick, args.threads, work)())
        except Exception as err:  # noqa: BLE001 - one failed measurement must not lose the others' rows
            traceback.print_exc()
            table.add([Row(name, "failed", None, note=f"{type(err).__name__}: {err}")])
        print(f"bench: {name} done in {time.perf_counter() - section_started:.0f} s", file=sys.stderr, flush=True)
    header = (
        f"twotier bench{' --quick' if args.quick else ''}: {os.cpu_count()} cores, "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} thread(s), Python {platform.python_version()}, "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    lines = [header, ""] + table.lines()
    print("\n".join(lines))
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / ("table-quick.txt" if args.quick else "table.txt")).write_text(
        "\n".join(lines) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
