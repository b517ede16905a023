"""Issue 4, item 8: how long until the first training step, and what importing each layer costs.

Every figure comes from fresh child processes, so nothing is already imported or cached in memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twotier.store import LedgerReader

from .stats import Row, Sample, ratios
from .workload import scratch_dir

SECTION = "8 start-up"
MODULES = ("twotier.tui.cli", "twotier.store", "twotier.engine.runner")
IMPORT_PROBE = (
    "import sys, time; started = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - started, 'torch' in sys.modules)"
)


def _first_step(threads: int) -> tuple[float, float]:
    """Seconds from launching `twotier-tui --headless` to its first event, and to its exit."""
    command = [
        str(Path(sys.executable).with_name("twotier-tui")),
        "--headless",
        "--max-steps",
        "3",
        "--log-steps",
        "1",
        "--eval-steps",
        "0",
    ]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        ledger = Path(folder) / "ledger.db"
        command += ["--ledger", str(ledger), "--output-dir", str(Path(folder) / "out")]
        started = time.time()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        ended = time.time()
        with LedgerReader(ledger) as reader:
            first = reader.events_after(reader.run("latest").id, 0, 1)[0]
    return first.wall_time - started, ended - started


def _import_seconds(module: str) -> tuple[float, bool]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE.format(module=module)], check=True, capture_output=True, text=True
    )
    seconds, torch_loaded = done.stdout.split()
    return float(seconds), torch_loaded == "True"


def measure(quick: bool, threads: int) -> list[Row]:
    repeats = 2 if quick else 3
    first, whole = [], []
    imports: dict[str, list[float]] = {module: [] for module in MODULES}
    torch_in: dict[str, bool] = {}
    for _ in range(repeats):
        to_first, to_exit = _first_step(threads)
        first.append(to_first)
        whole.append(to_exit)
        for module in MODULES:
            seconds, torch_in[module] = _import_seconds(module)
            imports[module].append(seconds)
    rows = [
        Row(
            SECTION,
            "twotier-tui --headless: launch -> first step",
            Sample.of(first),
            "s",
            note="demo model and data written on the fly, 3 steps, first event's wall_time minus launch",
        ),
        Row(SECTION, "  launch -> exit (3 steps)", Sample.of(whole), "s"),
    ]
    rows += [
        Row(SECTION, f"import {module}", Sample.of(values), "s", note=f"torch imported: {torch_in[module]}")
        for module, values in imports.items()
    ]
    rows.append(
        Row(
            SECTION,
            "import engine.runner / tui.cli",
            ratios(imports["twotier.engine.runner"], imports["twotier.tui.cli"]),
            "x",
        )
    )
    return rows
