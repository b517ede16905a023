"""Issue 14: start-up (model load + data preparation) and peak memory at 30k, 300k and 1M rows, first and cached start.

Each start is a fresh child process with its own `datasets` cache folder, on generated prompt/answer rows of
20-60 characters, the demo tokenizer and max_length 160. `python -m bench.data --code DIR` measures another
checkout's engine (e.g. the code before the Arrow pipeline) with the same rows and the same child.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import tempfile
from pathlib import Path

from .stats import Row, Sample, judged
from .workload import scratch_dir

SECTION = "10 data"
SIZES = (30_000, 300_000, 1_000_000)
QUICK_SIZES = (30_000, 300_000)
MAX_LENGTH = 160
RSS_GOAL = 1.5
CACHED_GOAL_S = 10.0
# The child prints one JSON line: what happens before the first training step, and the process's peak RSS.
CHILD = """
import json, os, resource, sys, time
from pathlib import Path
started = time.perf_counter()
from twotier.engine.config import load_config
from twotier.engine.data import load_splits
from twotier.engine.model import load_model
imported = time.perf_counter()
model, tokenizer = load_model(sys.argv[1])
loaded = time.perf_counter()
config = load_config(None, {"dataset": sys.argv[2], "max_length": int(sys.argv[4]), "output_dir": sys.argv[3]})
splits = load_splits(config, tokenizer, Path(sys.argv[3]))
prepared = time.perf_counter()
own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"import_s": imported - started, "model_s": loaded - imported, "data_s": prepared - loaded,
                  "train_rows": len(splits.train), "peak_rss_mb": own.ru_maxrss / 1024,
                  "worker_peak_rss_mb": workers.ru_maxrss / 1024,
                  "cpu_s": own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime}))
"""


def write_rows(path: Path, count: int, seed: int = 0) -> Path:
    """`count` prompt/answer rows of 20-60 lowercase characters and spaces, as JSONL."""
    rng = random.Random(seed)
    letters = string.ascii_lowercase + "    "

    def text() -> str:
        return "".join(rng.choice(letters) for _ in range(rng.randint(20, 60))).strip() or "x"

    with path.open("w", encoding="utf-8") as handle:
        for _ in range(count):
            handle.write(json.dumps({"prompt": text(), "answer": text()}) + "\n")
    return path


def start(model: Path, data: Path, workdir: Path, cache: Path, code: str | None = None) -> dict[str, float]:
    """One start in a fresh process: seconds per phase and peak RSS in MB."""
    env = {
        **os.environ,
        "HF_DATASETS_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    if code is not None:
        env["PYTHONPATH"] = code
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(data), str(workdir), str(MAX_LENGTH)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_sizes(sizes: tuple[int, ...], code: str | None = None, report: bool = False) -> dict[int, dict[str, dict]]:
    """First and cached start at each size; each size gets its own fresh cache folder."""
    from twotier.engine.demo import write_demo_model

    results: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        root = Path(folder)
        model = write_demo_model(root / "model", 0)
        for size in sizes:
            data = write_rows(root / f"rows-{size}.jsonl", size)
            cache = root / f"cache-{size}"
            results[size] = {
                phase: start(model, data, root / f"work-{size}", cache, code) for phase in ("first", "cached")
            }
            if report:
                print(f"{size:>9,} rows: {json.dumps(results[size])}", file=sys.stderr, flush=True)
            data.unlink()
    return results


def measure(quick: bool) -> list[Row]:
    sizes = QUICK_SIZES if quick else SIZES
    results = run_sizes(sizes)
    rows: list[Row] = []
    for size in sizes:
        for phase in ("first", "cached"):
            figures = results[size][phase]
            label = f"{size // 1000}k rows, {phase} start"
            rows.append(
                Row(
                    SECTION,
                    f"{label}: model load + data",
                    Sample.of([figures["model_s"] + figures["data_s"]]),
                    "s",
                    note=f"data alone {figures['data_s']:.1f} s, imports {figures['import_s']:.1f} s, "
                    f"CPU {figures['cpu_s']:.0f} s in all",
                )
            )
            rows.append(
                Row(
                    SECTION,
                    f"{label}: peak RSS",
                    Sample.of([figures["peak_rss_mb"]]),
                    "MB",
                    note=f"largest tokenizing worker {figures['worker_peak_rss_mb']:.0f} MB"
                    if figures["worker_peak_rss_mb"]
                    else "",
                )
            )
    smallest, largest = results[sizes[0]], results[sizes[-1]]
    peak = max(largest[p]["peak_rss_mb"] for p in largest) / max(smallest[p]["peak_rss_mb"] for p in smallest)
    rows.append(
        judged(
            Row(
                SECTION,
                f"peak RSS {sizes[-1] // 1000}k / {sizes[0] // 1000}k rows",
                Sample.of([peak]),
                "x",
                f"<= {RSS_GOAL}",
            ),
            lambda ratio: ratio <= RSS_GOAL,
        )
    )
    cached = largest["cached"]["model_s"] + largest["cached"]["data_s"]
    rows.append(
        judged(
            Row(
                SECTION,
                f"cached start at {sizes[-1] // 1000}k rows",
                Sample.of([cached]),
                "s",
                f"< {CACHED_GOAL_S:.0f}",
            ),
            lambda seconds: seconds < CACHED_GOAL_S,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__)
    parser.add_argument("--code", help="a folder holding twotier/engine and twotier/store to measure instead")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    print(json.dumps(run_sizes(tuple(args.sizes), args.code, report=True), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
